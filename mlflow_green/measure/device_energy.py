"""One device's energy: cumulative as a meter read it, and over one window.

A meter returns :class:`DeviceCounter` values (energy since the meter was opened); subtracting
two snapshots of them gives one :class:`DeviceEnergy` per device for the window between them
(see :mod:`mlflow_green.measure.readings`).

Example:
    >>> DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 50.0, 2.0, share="cpu-time").basis
    'counter, apportioned by cpu-time share'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from mlflow_green.measure.provenance import Component, Provenance, Scope, basis

_Record = TypeVar("_Record", "DeviceCounter", "DeviceEnergy")


def evolve(record: _Record, **changes: Any) -> _Record:
    """A copy of a device record with some fields changed: ``dataclasses.replace`` without the call
    of ``__init__`` (these records have no validation), about ten times cheaper — window arithmetic
    runs at every epoch boundary.

    Example:
        >>> evolve(DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 50.0, 2.0), energy_j=10.0).power_w
        5.0
    """
    fields = record.__dict__
    for name in changes:
        if name not in fields:
            raise TypeError(f"{type(record).__name__} has no field {name!r}")
    copy = object.__new__(type(record))
    copy.__dict__.update(fields)
    copy.__dict__.update(changes)
    return copy


def build(record_type: type[_Record], /, **fields: Any) -> _Record:
    """``record_type(**fields)`` without the frozen dataclass's ``__init__`` (one ``object.__setattr__``
    per field: five times the cost), for the reads and windows at every epoch boundary. These
    records have no validation; a field not given keeps its default (the class attribute).

    Example:
        >>> d = build(DeviceEnergy, device_id="cpu:0", component="cpu", meter="rapl", provenance="counter",
        ...           energy_j=50.0, duration_s=2.0)
        >>> d == DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 50.0, 2.0), d.share
        (True, '')
    """
    record = object.__new__(record_type)
    record.__dict__.update(fields)
    return record


@dataclass(frozen=True)
class DeviceCounter:
    """Cumulative energy of one device at one instant, as a meter read it.

    Attributes:
        device_id: Stable key, unique across hosts for GPUs (``gpu:GPU-<uuid>``) and unique per
            host for CPU sockets and RAM (``cpu:0``, ``ram:0``).
        component: ``gpu``, ``cpu`` or ``ram``.
        energy_j: Energy since the meter was opened, in joules; never decreases.
        provenance: How it was obtained: ``counter``, ``sampled`` or ``estimate``.
        meter: Name of the meter that produced it (``nvml``, ``rapl``, ``estimate`` ...).
        label: Human-readable device name (``NVIDIA H100 80GB HBM3``, ``AMD EPYC``).
        note: Why the provenance is weaker than the meter's usual one, if it is.
        scope: Whose energy this is: ``machine`` (the whole device) or ``process`` (this
            process tree's part of it).
        share: How the number was apportioned, if it was (see :data:`SHARE_BASES`); ``""``
            when the device was read whole.
        estimated_j: The part of ``energy_j`` that is estimated rather than measured (a gap
            while the device did not answer, a counter reset); a window over which it changes
            is labelled ``estimate``. It may fall back when a device answers again and its
            counter replaces the extrapolation.
    """

    device_id: str
    component: Component
    energy_j: float
    provenance: Provenance
    meter: str
    label: str = ""
    note: str = ""
    scope: Scope = "machine"
    share: str = ""
    estimated_j: float = 0.0


@dataclass(frozen=True)
class DeviceEnergy:
    """Energy one device used during one window.

    Example:
        >>> d = DeviceEnergy("gpu:GPU-1", "gpu", "nvml", "counter", 600.0, 2.0)
        >>> d.power_w
        300.0
    """

    device_id: str
    component: Component
    meter: str
    provenance: Provenance
    energy_j: float
    duration_s: float
    label: str = ""
    host: str = ""
    note: str = ""
    scope: Scope = "machine"
    share: str = ""

    @property
    def apportioned(self) -> bool:
        """True if the energy is a share of a larger reading, not read whole from a counter or power."""
        return bool(self.share)

    @property
    def basis(self) -> str:
        """How the number was obtained, in one phrase (``counter, apportioned by cpu-time share``)."""
        return basis(self.provenance, self.share)

    @property
    def power_w(self) -> float:
        """Mean power over the window, in watts (0 for an empty window)."""
        return self.energy_j / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, as written into ``green/report.json``."""
        return {
            "device_id": self.device_id,
            "component": self.component,
            "label": self.label,
            "host": self.host,
            "meter": self.meter,
            "provenance": self.provenance,
            "scope": self.scope,
            "share": self.share,
            "basis": self.basis,
            "energy_j": self.energy_j,
            "duration_s": self.duration_s,
            "power_w": self.power_w,
            **({"note": self.note} if self.note else {}),
        }
