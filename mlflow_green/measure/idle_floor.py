"""The idle floor of each device: the lowest power it drew during the run, and the energy above it.

A device's gross energy includes what it draws doing nothing (a GPU idles at 50–100 W, a CPU
package at tens of watts); the energy above the lowest power seen is what the training's work
added. Every snapshot the tracker takes (start, epoch and phase boundaries, stop) is an
observation; between two snapshots at least :data:`MIN_INTERVAL_S` apart, each device's mean
power is a candidate for its floor. ``report.json`` gives, per device, the floor, the gross and
the dynamic (above-floor) energy, so a reader sees both.

Example:
    >>> from mlflow_green.measure.readings import DeviceCounter, Snapshot
    >>> floor = IdleFloor()
    >>> for t, e in [(0.0, 0.0), (10.0, 500.0), (20.0, 700.0)]:   # 50 W, then 20 W
    ...     floor.observe(Snapshot(t, (DeviceCounter("gpu:GPU-1", "gpu", e, "counter", "nvml"),), host="h"))
    >>> floor.floor_w("h", "gpu:GPU-1")
    20.0
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from mlflow_green.measure.readings import Measurement, Snapshot

MIN_INTERVAL_S = 0.5
"""Intervals shorter than this are not used (energy counters tick every 1–100 ms)."""


@dataclass
class _Seen:
    floor_w: float
    intervals: int


class IdleFloor:
    """Tracks each device's lowest mean power between consecutive snapshots (thread-safe)."""

    def __init__(self, min_interval_s: float = MIN_INTERVAL_S) -> None:
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._last: Snapshot | None = None
        self._seen: dict[tuple[str, str], _Seen] = {}

    def observe(self, snapshot: Snapshot) -> None:
        """Learn from the interval since the previous snapshot, if it is long enough."""
        with self._lock:
            last = self._last
            if last is not None and snapshot.timestamp_s - last.timestamp_s < self.min_interval_s:
                return  # too short: keep measuring from the earlier snapshot
            self._last = snapshot
            if last is None:
                return
            duration_s = snapshot.timestamp_s - last.timestamp_s
            before = {d.device_id: d.energy_j for d in last.devices}
            for device in snapshot.devices:
                if device.device_id not in before:
                    continue
                power_w = max(device.energy_j - before[device.device_id], 0.0) / duration_s
                key = (snapshot.host, device.device_id)
                seen = self._seen.get(key)
                if seen is None:
                    self._seen[key] = _Seen(power_w, 1)
                else:
                    seen.floor_w = min(seen.floor_w, power_w)
                    seen.intervals += 1

    def floor_w(self, host: str, device_id: str) -> float | None:
        """The lowest mean power seen for one device, in watts (None if never observed)."""
        with self._lock:
            seen = self._seen.get((host, device_id))
            return None if seen is None else seen.floor_w

    def report(self, total: Measurement) -> dict[str, Any]:
        """The ``idle_floor`` section of ``report.json`` for a run total."""
        devices = []
        with self._lock:
            for device in total.devices:
                seen = self._seen.get((device.host, device.device_id))
                entry: dict[str, Any] = {
                    "host": device.host,
                    "device_id": device.device_id,
                    "component": device.component,
                    "scope": device.scope,
                    "gross_energy_j": device.energy_j,
                }
                if seen is None:  # another rank's device, or a run without a long enough interval
                    floor_w, intervals = device.power_w, 0
                    entry["note"] = "no interval of its own was observed: the floor is the run's mean power"
                else:
                    floor_w, intervals = seen.floor_w, seen.intervals
                entry["floor_power_w"] = floor_w
                entry["dynamic_energy_j"] = max(device.energy_j - floor_w * device.duration_s, 0.0)
                entry["intervals"] = intervals
                devices.append(entry)
        return {
            "basis": (
                f"per device, the lowest mean power between two readings at least {self.min_interval_s:g} s apart "
                "(start, epoch and phase boundaries, stop); dynamic energy = gross − floor × duration"
            ),
            "devices": devices,
        }
