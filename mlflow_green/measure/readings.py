"""Frozen measurement types, in SI units (J, W, s), with provenance on every number.

A meter returns :class:`DeviceCounter` values: the cumulative energy of one device since the
meter was opened. The tracker gathers them into a :class:`Snapshot`; subtracting two snapshots
gives a :class:`Measurement` of the window between them, one :class:`DeviceEnergy` per device.

Example:
    >>> a = Snapshot(10.0, (DeviceCounter("cpu:0", "cpu", 100.0, "counter", "rapl"),))
    >>> b = Snapshot(12.0, (DeviceCounter("cpu:0", "cpu", 150.0, "counter", "rapl"),))
    >>> m = b - a
    >>> m.energy_j, m.duration_s, m.power_w
    (50.0, 2.0, 25.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Component = Literal["gpu", "cpu", "ram"]
Provenance = Literal["counter", "sampled", "estimate"]
Scope = Literal["process", "machine"]

COMPONENTS: tuple[Component, ...] = ("gpu", "cpu", "ram")
PROVENANCES: tuple[Provenance, ...] = ("counter", "sampled", "estimate")
SCOPES: tuple[Scope, ...] = ("process", "machine")

SHARE_BASES: dict[str, str] = {
    "cpu-time": "this process tree's share of the CPU time spent on the machine",
    "rss": "this process tree's share of resident memory",
    "mig": "a MIG slice's share of its parent GPU",
    "gpu-utilisation": "this process tree's share of the GPU's utilisation, as NVML reports it per process",
    "shared-whole": "a GPU other processes used at the same time, billed whole (no per-process figure)",
    "time": "a share of a window by elapsed time (the data/train phase split)",
    "framework-device": "a GPU billed whole because the framework reports using it (NVML's process list "
    "showed no PID of this training, as in many containers)",
    "unattributed": "a GPU billed whole whose processes' PIDs live outside this PID namespace, with no "
    "framework to name its device",
}
"""How a number may have been apportioned (the ``share`` of a reading). A device read whole has
``share == ""``; several bases apply in turn and are joined with ``+`` (``cpu-time+time``)."""


def join_shares(*shares: str) -> str:
    """The bases of several apportionments, each once, in a stable order.

    Example:
        >>> join_shares("", "cpu-time", "time+cpu-time")
        'cpu-time+time'
    """
    order = list(SHARE_BASES)
    bases = {b for s in shares for b in s.split("+") if b}
    return "+".join(sorted(bases, key=lambda b: (order.index(b) if b in order else len(order), b)))


def basis(provenance: str, share: str = "") -> str:
    """How a number was obtained, in one phrase: the provenance, and the share if apportioned.

    Example:
        >>> basis("counter")
        'counter'
        >>> basis("counter", "cpu-time")
        'counter, apportioned by cpu-time share'
    """
    return f"{provenance}, apportioned by {share} share" if share else provenance

def share_label(label: str, share: str = "") -> str:
    """A meter's label in ``green.meters`` with the share its number was apportioned by, if any.

    ``rapl-counter`` is a whole package read from its counter; ``rapl-counter*cpu-time`` is that
    counter times this process tree's CPU-time share (``*`` reads "times the share of").

    Example:
        >>> share_label("rapl-counter", "cpu-time"), share_label("rapl-counter")
        ('rapl-counter*cpu-time', 'rapl-counter')
    """
    return f"{label}*{share}" if share else label


_PROVENANCE_RANK: dict[str, int] = {"counter": 2, "sampled": 1, "estimate": 0}


def weakest_provenance(values: Iterable[Provenance]) -> Provenance:
    """The least trustworthy provenance of several (``estimate`` < ``sampled`` < ``counter``).

    Example:
        >>> weakest_provenance(["counter", "sampled"])
        'sampled'
    """
    values = list(values)
    if not values:  # nothing measured is not a measurement
        return "estimate"
    return min(values, key=lambda p: _PROVENANCE_RANK[p])


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
            provenance = now.provenance if then is None else weakest_provenance((now.provenance, then.provenance))
            if abs(now.estimated_j - (then.estimated_j if then is not None else 0.0)) > 1e-9:
                provenance = "estimate"  # the window holds estimated energy, or corrects an estimate
            devices.append(
                DeviceEnergy(
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

    @property
    def energy_j(self) -> float:
        """Total IT energy of every device, in joules."""
        return sum(d.energy_j for d in self.devices)

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
        return replace(self, devices=tuple(replace(d, host=host) for d in self.devices))

    def __add__(self, other: Measurement) -> Measurement:
        """Sum of two consecutive windows: durations add, per-device energies add."""
        if not isinstance(other, Measurement):
            return NotImplemented
        return _combine(self, other, duration_s=self.duration_s + other.duration_s)

    def __sub__(self, other: Measurement) -> Measurement:
        """This window minus a sub-window of it (e.g. an epoch minus its validation)."""
        if not isinstance(other, Measurement):
            return NotImplemented
        taken = {(d.host, d.device_id): d.energy_j for d in other.devices}
        duration_s = max(self.duration_s - other.duration_s, 0.0)
        return Measurement(
            duration_s,
            tuple(
                replace(d, energy_j=max(d.energy_j - taken.get((d.host, d.device_id), 0.0), 0.0), duration_s=duration_s)
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
                replace(d, energy_j=d.energy_j * fraction, duration_s=duration_s, share=join_shares(d.share, share))
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
        merged = {_merge_key(d): d for d in self.devices}
        for device in other.devices:
            key = _merge_key(device)
            seen = merged.get(key)
            if seen is None:
                merged[key] = device
            elif _process_shares(seen, device):
                merged[key] = replace(
                    seen,
                    energy_j=seen.energy_j + device.energy_j,
                    provenance=weakest_provenance((seen.provenance, device.provenance)),
                    share=join_shares(seen.share, device.share),
                    note=seen.note or device.note,
                )
            elif device.energy_j > seen.energy_j:
                merged[key] = device
        return Measurement(max(self.duration_s, other.duration_s), tuple(merged.values()))

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


def _is_gpu_uuid(device_id: str) -> bool:
    """GPUs and MIG slices keyed by their globally unique UUID are the same device on any host."""
    return device_id.startswith(("gpu:GPU-", "gpu:MIG-"))


def _merge_key(device: DeviceEnergy) -> tuple[str, str]:
    return ("", device.device_id) if _is_gpu_uuid(device.device_id) else (device.host, device.device_id)


_PROCESS_BASES = frozenset({"cpu-time", "rss", "gpu-utilisation"})


def _process_shares(a: DeviceEnergy, b: DeviceEnergy) -> bool:
    """Two ranks' shares of one device that cover different processes, so they add up."""
    if a.scope != "process" or b.scope != "process":
        return False
    bases_a, bases_b = set(a.share.split("+")), set(b.share.split("+"))
    return bool(bases_a & _PROCESS_BASES) and bool(bases_b & _PROCESS_BASES)


def _combine(a: Measurement, b: Measurement, duration_s: float) -> Measurement:
    merged: dict[tuple[str, str], DeviceEnergy] = {}
    for d in (*a.devices, *b.devices):
        key = (d.host, d.device_id)
        seen = merged.get(key)
        if seen is None:
            merged[key] = replace(d, duration_s=duration_s)
        else:
            merged[key] = replace(
                seen,
                energy_j=seen.energy_j + d.energy_j,
                provenance=weakest_provenance((seen.provenance, d.provenance)),
                note=seen.note or d.note,
                share=join_shares(seen.share, d.share),
                scope="process" if "process" in (seen.scope, d.scope) else "machine",
            )
    return Measurement(duration_s, tuple(merged.values()))
