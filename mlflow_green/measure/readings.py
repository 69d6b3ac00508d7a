"""Frozen measurement types, in SI units (J, W, s), with provenance on every number.

A meter returns :class:`DeviceCounter` values: the cumulative energy of one device since the
meter was opened. The tracker gathers them into a :class:`Snapshot`; subtracting two snapshots
gives a :class:`Measurement` of the window between them, one :class:`DeviceEnergy` per device.

The vocabulary (components, provenances, scopes, :data:`SHARE_BASES`) is
:mod:`~mlflow_green.measure.provenance`, the per-device types
:mod:`~mlflow_green.measure.device_energy`, and how devices combine across windows and ranks
:mod:`~mlflow_green.measure.device_merging`; every name is importable from here too.

Example:
    >>> a = Snapshot(10.0, (DeviceCounter("cpu:0", "cpu", 100.0, "counter", "rapl"),))
    >>> b = Snapshot(12.0, (DeviceCounter("cpu:0", "cpu", 150.0, "counter", "rapl"),))
    >>> m = b - a
    >>> m.energy_j, m.duration_s, m.power_w
    (50.0, 2.0, 25.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mlflow_green.measure.device_energy import DeviceCounter, DeviceEnergy, build, evolve
from mlflow_green.measure.device_merging import combine_devices, merge_parallel_devices
from mlflow_green.measure.provenance import (
    COMPONENTS,
    PROVENANCES,
    SCOPES,
    SHARE_BASES,
    Component,
    Provenance,
    Scope,
    basis,
    join_shares,
    share_label,
    weaker,
    weakest_provenance,
)

__all__ = [
    "COMPONENTS", "PROVENANCES", "SCOPES", "SHARE_BASES", "Component", "DeviceCounter", "DeviceEnergy",
    "Measurement", "Provenance", "Scope", "Snapshot", "basis", "energy_between", "join_shares", "share_label", "weakest_provenance",
]


@dataclass(frozen=True)
class Snapshot:
    """Every selected device's cumulative counter at one instant (monotonic clock)."""

    timestamp_s: float
    devices: tuple[DeviceCounter, ...]
    host: str = ""

    def __sub__(self, earlier: Snapshot) -> Measurement:
        if not isinstance(earlier, Snapshot):
            return NotImplemented
        duration_s = max(self.timestamp_s - earlier.timestamp_s, 0.0)
        before = {d.device_id: d for d in earlier.devices}
        devices = []
        for now in self.devices:
            then = before.get(now.device_id)
            start_j = then.energy_j if then is not None else 0.0
            provenance = now.provenance if then is None else weaker(now.provenance, then.provenance)
            if abs(now.estimated_j - (then.estimated_j if then is not None else 0.0)) > 1e-9:
                provenance = "estimate"  # the window holds estimated energy, or corrects an estimate
            devices.append(
                build(
                    DeviceEnergy,
                    device_id=now.device_id,
                    component=now.component,
                    meter=now.meter,
                    provenance=provenance,
                    energy_j=max(now.energy_j - start_j, 0.0),
                    duration_s=duration_s,
                    label=now.label,
                    host=self.host,
                    note=now.note or (then.note if then is not None else ""),
                    scope=now.scope,
                    share=join_shares(now.share, then.share if then is not None else ""),
                )
            )
        return Measurement(duration_s=duration_s, devices=tuple(devices))


def energy_between(now_j: Mapping[str, float], before_j: Mapping[str, float]) -> float:
    """The energy of the window between two snapshots' counters (device id -> joules): the same sum,
    device by device in the same order, as ``(now - before).energy_j``, without building the measurement.

    Example:
        >>> energy_between({"cpu:0": 150.0, "ram:0": 8.0}, {"cpu:0": 100.0})
        58.0
    """
    total_j = 0.0
    for device_id, energy_j in now_j.items():  # a loop, not sum() of a generator: an epoch's end calls it
        window_j = energy_j - before_j.get(device_id, 0.0)
        if window_j > 0:
            total_j += window_j
    return total_j


@dataclass(frozen=True)
class Measurement:
    """Energy of every device over one window (an epoch, a phase, a whole run).

    Measurements of consecutive windows add up with ``+``; a sub-window is taken out with ``-``;
    devices are matched by host and device id. Conversion to kWh happens only at the MLflow boundary.

    Example:
        >>> cpu = DeviceEnergy("cpu:0", "cpu", "estimate", "estimate", 30.0, 1.0)
        >>> m = Measurement(1.0, (cpu,)) + Measurement(1.0, (cpu,))
        >>> m.energy_j, m.duration_s, m.estimated
        (60.0, 2.0, True)
    """

    duration_s: float
    devices: tuple[DeviceEnergy, ...] = field(default_factory=tuple)
    energy_j: float = field(init=False, repr=False, compare=False)
    """Total IT energy of every device, in joules (worked out once, at construction: a few additions,
    cheaper than a cached property's lookup and lock)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "energy_j", sum(d.energy_j for d in self.devices))

    @property
    def power_w(self) -> float:
        """Mean total power over the window, in watts (0 for an empty window)."""
        return self.energy_j / self.duration_s if self.duration_s > 0 else 0.0

    def component_energy_j(self, component: Component) -> float:
        """Energy of all devices of one component (``gpu``, ``cpu`` or ``ram``), in joules."""
        return sum(d.energy_j for d in self.devices if d.component == component)

    @property
    def components(self) -> tuple[Component, ...]:
        """The components measured, in schema order."""
        present = {d.component for d in self.devices}
        return tuple(c for c in COMPONENTS if c in present)

    @property
    def provenance(self) -> Provenance:
        """The weakest provenance of any device (``estimate`` if there are none)."""
        return weakest_provenance(d.provenance for d in self.devices)

    @property
    def estimated(self) -> bool:
        """True if any device's energy is an estimate, or nothing was measured at all."""
        return not self.devices or any(d.provenance == "estimate" for d in self.devices)

    @property
    def apportioned(self) -> bool:
        """True if any device's energy is a share of a larger reading (see :data:`SHARE_BASES`)."""
        return any(d.share for d in self.devices)

    def scope_of(self, component: Component) -> Scope | None:
        """Whose energy a component is: ``process`` if any of its devices is billed by share, else ``machine``."""
        scopes = {d.scope for d in self.devices if d.component == component}
        if not scopes:
            return None
        return "process" if "process" in scopes else "machine"

    def scope_tag(self) -> str:
        """The ``green.scope`` tag: whose share each component is, e.g. ``gpu:process,cpu:process,ram:process``."""
        return ",".join(f"{c}:{self.scope_of(c)}" for c in self.components)

    def with_host(self, host: str) -> Measurement:
        """The same measurement with every device attributed to ``host``."""
        return replace(self, devices=tuple(evolve(d, host=host) for d in self.devices))

    def __add__(self, other: Measurement) -> Measurement:
        """Sum of two consecutive windows: durations add, per-device energies add."""
        if not isinstance(other, Measurement):
            return NotImplemented
        if not self.devices and not self.duration_s:  # nothing + other (running totals start so)
            return other
        if not other.devices and not other.duration_s:
            return self
        duration_s = self.duration_s + other.duration_s
        return Measurement(duration_s, combine_devices(self.devices, other.devices, duration_s))

    def __sub__(self, other: Measurement) -> Measurement:
        """This window minus a sub-window of it (e.g. an epoch minus its validation)."""
        if not isinstance(other, Measurement):
            return NotImplemented
        if not other.devices and not other.duration_s:  # minus nothing
            return self
        taken = {(d.host, d.device_id): d.energy_j for d in other.devices}
        duration_s = max(self.duration_s - other.duration_s, 0.0)
        return Measurement(
            duration_s,
            tuple(
                evolve(d, energy_j=max(d.energy_j - taken.get((d.host, d.device_id), 0.0), 0.0), duration_s=duration_s)
                for d in self.devices
            ),
        )

    def scaled(self, fraction: float, *, share: str = "time") -> Measurement:
        """A share of this window (energy and duration times ``fraction``), labelled with its basis.

        Example:
            >>> cpu = DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 100.0, 10.0)
            >>> part = Measurement(10.0, (cpu,)).scaled(0.25)
            >>> part.energy_j, part.devices[0].basis
            (25.0, 'counter, apportioned by time share')
        """
        duration_s = self.duration_s * fraction
        return Measurement(
            duration_s,
            tuple(
                evolve(d, energy_j=d.energy_j * fraction, duration_s=duration_s, share=join_shares(d.share, share))
                for d in self.devices
            ),
        )

    def merge_parallel(self, other: Measurement) -> Measurement:
        """Union of two measurements of the same window by different ranks (processes, hosts).

        A device seen by both (the same GPU UUID, the same host's CPU) is one device: two
        *process* shares of it (each rank billed its own process tree's part: CPU time, RSS,
        GPU utilisation) add up; otherwise it is counted once — the larger reading, since a
        whole device includes any share of it. The longer duration wins.

        Example:
            >>> cpu = DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 10.0, 1.0, host="h", scope="process", share="cpu-time")
            >>> Measurement(1.0, (cpu,)).merge_parallel(Measurement(1.0, (cpu,))).energy_j
            20.0
        """
        return Measurement(max(self.duration_s, other.duration_s), merge_parallel_devices(self.devices, other.devices))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, as written into ``green/report.json``."""
        return {
            "duration_s": self.duration_s,
            "energy_j": self.energy_j,
            "power_w": self.power_w,
            "provenance": self.provenance,
            "estimated": self.estimated,
            "apportioned": self.apportioned,
            "scope": self.scope_tag(),
            "energy_j_by_component": {c: self.component_energy_j(c) for c in self.components},
            "devices": [d.to_dict() for d in self.devices],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        """Inverse of :meth:`to_dict` (used for resume and for gathering ranks)."""
        devices = tuple(
            DeviceEnergy(
                device_id=d["device_id"],
                component=d["component"],
                meter=d["meter"],
                provenance=d["provenance"],
                energy_j=float(d["energy_j"]),
                duration_s=float(d["duration_s"]),
                label=d.get("label", ""),
                host=d.get("host", ""),
                note=d.get("note", ""),
                scope=d.get("scope", "machine"),
                share=d.get("share", ""),
            )
            for d in data.get("devices", ())
        )
        return cls(float(data["duration_s"]), devices)
