"""CPU package and DRAM energy from Linux powercap RAPL counters (``energy_uj``).

Which zones are read — packages, the dies of multi-die packages, DRAM, and ``psys`` only when
there is nothing else — is :mod:`mlflow_green.measure.meters.rapl_zones`. Dies that mirror one
package-wide counter (their counters hold the same value at open and move together) are counted
once, as CodeCarbon does; a die whose counter moves on its own is summed with the others.

The counters wrap at ``max_energy_range_uj``; a decrease is read as one wrap. The meter asks
the tracker to poll it often enough (``poll_interval_s``) that a counter never wraps twice
between two reads, even at 1 kW per package; under ``scope="process"`` it polls every second.
How each zone's counter is followed over time (wraps, mirrors, failures) is
:mod:`~mlflow_green.measure.meters.rapl_counters`; what ``is_available()`` says,
:mod:`~mlflow_green.measure.meters.rapl_availability`.

Under ``scope="process"`` (the default) each interval between two reads is split
(:mod:`mlflow_green.measure.shares`): the package's idle floor (the lowest power seen over the
run) by this process tree's share of the CPU capacity, the energy above it by the tree's share
of the machine's busy CPU time; DRAM by the tree's share of resident memory. Readings then say
``share="cpu-time"`` / ``"rss"`` and the ``green.meters`` label is ``rapl-counter*cpu-time``.

Example:
    >>> import tempfile
    >>> missing = Path(tempfile.mkdtemp()) / "powercap"
    >>> RaplMeter(missing).is_available().reason.startswith(f"RAPL: {missing} not present")
    True
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow_green.errors import MeterError
from mlflow_green.measure import hardware, procfs
from mlflow_green.measure.attribution import Attribution, Usage, UsageProbe
from mlflow_green.measure.meters.base import PROCESS_SHARES, Availability, ProcessShareMeter
from mlflow_green.measure.meters.rapl_availability import availability, permission_reason, read_ascii
from mlflow_green.measure.meters.rapl_counters import (
    GUARD_POWER_W,
    MAX_POLL_INTERVAL_S,
    MIN_POLL_INTERVAL_S,
    MIRROR_TOLERANCE_J,
    Zone,
    ZoneDevice,
    device_step,
    guard_interval_s,
    open_zone,
)
from mlflow_green.measure.meters.rapl_zones import DeviceZones, ReadText, discover
from mlflow_green.measure.readings import Component, DeviceCounter, Provenance, share_label
from mlflow_green.measure.shares import UsageDelta, memory_share, split_package

logger = logging.getLogger(__name__)

__all__ = [
    "GUARD_POWER_W", "MAX_POLL_INTERVAL_S", "MIN_POLL_INTERVAL_S", "MIRROR_TOLERANCE_J", "POWERCAP_ROOT",
    "PROCESS_POLL_INTERVAL_S", "SHARES", "RaplMeter",
]

POWERCAP_ROOT = "/sys/class/powercap"
PROCESS_POLL_INTERVAL_S = 1.0
"""Under ``scope="process"``: how often shares are taken (and the idle floor learnt)."""
SHARES = PROCESS_SHARES


class RaplMeter(ProcessShareMeter):
    """Per-socket CPU package and DRAM energy from Linux powercap RAPL ``energy_uj`` counters.

    Args:
        root: The powercap folder (``/sys/class/powercap``; a fake tree in tests).
        read_text: Reads one sysfs file; injectable so tests can simulate ``PermissionError``
            (tests usually run as root, where ``chmod 000`` does not stop reads).
        cpu_times: The machine's cumulative CPU times, for process shares (``procfs.cpu_times``).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from mlflow_green.testing import FakePowercapTree
        >>> tree = FakePowercapTree(Path(tempfile.mkdtemp()))
        >>> tree.add_socket(0)
        >>> meter = RaplMeter(tree.root, read_text=tree.read_text)
        >>> meter.open(0.0)
        >>> tree.advance(0, package_j=50.0, dram_j=5.0)
        >>> [(c.device_id, c.energy_j) for c in meter.read(1.0)]
        [('cpu:0', 50.0), ('ram:0', 5.0)]
    """

    name = "rapl"
    priority = 100
    description = "CPU package and DRAM energy counters (Linux powercap RAPL)"

    def __init__(
        self,
        root: str | os.PathLike[str] = POWERCAP_ROOT,
        *,
        read_text: ReadText | None = None,
        cpu_times: Callable[[], Any] = procfs.cpu_times,
    ) -> None:
        self._root = Path(root)
        self._read = read_text or read_ascii
        self._cpu_times = cpu_times
        self._lock = threading.Lock()
        self._devices: list[ZoneDevice] = []
        self._opened_at_s: float | None = None
        self._last_s = 0.0
        self._probe: UsageProbe | None = None
        self._usage: Usage | None = None
        self.attribution = Attribution("machine")
        self.poll_interval_s = MAX_POLL_INTERVAL_S

    def label(self, component: Component, provenance: Provenance) -> str:
        """``rapl-counter``, or ``rapl-counter*cpu-time`` / ``rapl-counter*rss`` for a process share."""
        return share_label(f"{self.name}-{provenance}", self.share_of(component))

    # -- availability ------------------------------------------------------------------------

    def _read_uj(self, zone: Path) -> int:
        return int(self._read(zone / "energy_uj").strip())

    def _read_max_range_uj(self, zone: Path) -> int | None:
        try:
            value = int(self._read(zone / "max_energy_range_uj").strip())
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return value if value > 0 else None

    def is_available(self) -> Availability:
        try:
            return availability(self._root, self._read, self._read_uj)
        except Exception as exc:  # never raise from is_available
            return Availability.no(f"RAPL: cannot read {self._root} ({exc!r}) — CPU energy will be estimated")

    # -- Meter API ---------------------------------------------------------------------------

    def open(self, now_s: float) -> None:
        if not self._root.is_dir():
            raise MeterError(f"RAPL: {self._root} not present")
        try:
            layout = discover(self._root, self._read)
        except OSError as exc:
            raise MeterError(f"RAPL: cannot list {self._root}: {exc}") from exc
        devices = [d for d in (self._open_device(spec, now_s) for spec in layout.devices) if d is not None]
        if not any(d.spec.component == "cpu" for d in devices):
            raise MeterError(f"RAPL: no readable package zone under {self._root}")
        probe = UsageProbe(self.attribution.processes, self._cpu_times) if self.process_scope else None
        try:
            usage = probe.read() if probe is not None else None
        except Exception as exc:
            raise MeterError(f"RAPL: cannot read CPU times for the process share ({exc!r})") from exc
        with self._lock:
            self._devices = devices
            self._opened_at_s = self._last_s = now_s
            self._probe, self._usage = probe, usage
        zones = [z for d in devices for z in d.zones]
        self.poll_interval_s = guard_interval_s(zones)
        if self.process_scope:
            self.poll_interval_s = min(self.poll_interval_s, PROCESS_POLL_INTERVAL_S)

    def _open_device(self, spec: DeviceZones, now_s: float) -> ZoneDevice | None:
        zones: list[Zone] = []
        for path in spec.zones:
            try:
                start_uj = self._read_uj(path)
            except PermissionError as exc:
                if spec.component == "cpu":
                    raise MeterError(permission_reason(path / "energy_uj")) from exc
                logger.warning("RAPL: skipping unreadable DRAM zone %s: %s", path, exc)
                return None
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                if spec.component == "cpu":
                    raise MeterError(f"RAPL: cannot read {path / 'energy_uj'}: {exc}") from exc
                logger.warning("RAPL: skipping unreadable DRAM zone %s: %s", path, exc)
                return None
            zones.append(open_zone(path, start_uj, self._read_max_range_uj(path), now_s, zones))
        if spec.kind == "psys":
            label = "platform (psys)"
        else:
            label = hardware.cpu_model() if spec.component == "cpu" else "DRAM"
        return ZoneDevice(spec, label, zones)

    def _update(self, now_s: float) -> None:
        """Read every zone and bill the interval since the last read (lock held)."""
        duration_s = max(now_s - self._last_s, 0.0)
        usage_delta = None
        if self._probe is not None and self._usage is not None:
            try:
                usage = self._probe.read()
            except Exception as exc:  # the process went away or /proc is unreadable: keep the last share
                logger.debug("RAPL: cannot read CPU times: %s", exc)
                usage = self._usage
            usage_delta = UsageDelta.between(self._usage, usage, duration_s)
            self._usage = usage
        for device in self._devices:
            opened_at_s = now_s if self._opened_at_s is None else self._opened_at_s
            energy_j = device_step(device, self._read_uj, now_s, self._last_s, opened_at_s)
            if usage_delta is None:
                device.energy_j += energy_j
            elif device.spec.component == "cpu":
                floor_w = device.floor.observe(energy_j, duration_s)
                device.energy_j += split_package(energy_j, duration_s, floor_w, usage_delta)
            else:
                device.energy_j += energy_j * memory_share(usage_delta.rss_bytes, hardware.total_ram_bytes())
        self._last_s = max(now_s, self._last_s)

    def poll(self, now_s: float) -> None:
        """Read every counter so that none wraps twice between two window boundaries."""
        with self._lock:
            if self._opened_at_s is not None:
                self._update(now_s)

    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        with self._lock:
            if self._opened_at_s is None:
                raise MeterError("RAPL: read() before open()")
            self._update(now_s)
            zones = [z for d in self._devices for z in d.zones]
            if all(z.note and z.last_ok_s <= self._opened_at_s for z in zones):
                raise MeterError(f"RAPL: no counter under {self._root} could be read")
            return tuple(self._counter(d) for d in self._devices)

    def _counter(self, device: ZoneDevice) -> DeviceCounter:
        failed = any(z.note for z in device.zones)
        component = device.spec.component
        return DeviceCounter(
            device_id=device.spec.device_id,
            component=component,
            energy_j=device.energy_j,
            provenance="estimate" if failed else "counter",
            meter=self.name,
            label=device.label,
            note=device.note,
            scope="process" if self.process_scope else "machine",
            share=self.share_of(component),
        )

    def close(self) -> None:
        with self._lock:
            self._devices = []
            self._opened_at_s = None
            self._probe = self._usage = None
