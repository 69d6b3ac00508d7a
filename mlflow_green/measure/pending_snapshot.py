"""A snapshot taken now and worked out later: the cheap reading of a window boundary.

At a boundary on a training thread, :meth:`~mlflow_green.measure.tracker.EnergyTracker.mark`
has each meter capture its raw inputs (for the estimate meter of a process alone: the process's
CPU clock and memory) and returns a :class:`PendingSnapshot` with the instant of the capture. Its
``devices`` are worked out when first read — by the thread that accounts for the epoch, or by
any reader — from those inputs, in capture order, before any later reading: the same counters a
:meth:`~mlflow_green.measure.tracker.EnergyTracker.snapshot` taken then would hold.

Example:
    >>> from mlflow_green.measure.tracker import EnergyTracker
    >>> from mlflow_green.testing import FakeMeter
    >>> tracker = EnergyTracker(meters=[FakeMeter({"cpu:0": 10.0, "ram:0": 1.0})])
    >>> tracker.start()
    >>> snap = tracker.mark()          # a fake meter captures nothing: read at once
    >>> type(snap).__name__, [d.device_id for d in snap.devices]
    ('Snapshot', ['cpu:0', 'ram:0'])
    >>> _ = tracker.stop()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlflow_green.measure.readings import DeviceCounter, Measurement, Snapshot

if TYPE_CHECKING:
    from mlflow_green.measure.idle_floor import IdleFloor
    from mlflow_green.measure.meter_reading import TrackerMeters


class PendingSnapshot(Snapshot):
    """A :class:`~mlflow_green.measure.readings.Snapshot` whose devices are worked out on first use.

    Compares, hashes, pickles and subtracts as the snapshot it stands for.
    """

    def __init__(self, host: str, resolve: Callable[[], None]) -> None:  # noqa: D107 - see the class
        object.__setattr__(self, "timestamp_s", 0.0)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "_resolve", resolve)

    def fill(self, now_s: float, devices: tuple[DeviceCounter, ...]) -> None:
        """Set the counters of the capture at ``now_s`` (by the meters, once)."""
        object.__setattr__(self, "timestamp_s", now_s)
        object.__setattr__(self, "devices", devices)
        object.__setattr__(self, "_resolve", None)
        object.__setattr__(self, "_filler", None)

    def __call__(self, now_s: float, fresh: dict[str, DeviceCounter]) -> None:
        """The meters' read of this capture, worked out (the capture's ``resolved`` callback: see
        :meth:`~mlflow_green.measure.meter_reading.TrackerMeters.capture`)."""
        self.__dict__["_filler"]._filled(self, now_s, fresh)

    def __getattr__(self, name: str) -> Any:
        if name == "devices":
            resolve = self.__dict__.get("_resolve")
            if resolve is not None:
                resolve()
            if "devices" in self.__dict__:
                return self.__dict__["devices"]
        raise AttributeError(name)

    def resolved(self) -> Snapshot:
        """The plain snapshot this stands for."""
        return Snapshot(self.timestamp_s, self.devices, self.host)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PendingSnapshot):
            other = other.resolved()
        return self.resolved() == other

    def __hash__(self) -> int:
        return hash(self.resolved())

    def __repr__(self) -> str:
        return repr(self.resolved())

    def __reduce__(self) -> tuple[Any, ...]:
        return (Snapshot, (self.timestamp_s, self.devices, self.host))


class MarkedReadings:
    """The :meth:`mark` half of :class:`~mlflow_green.measure.tracker.EnergyTracker` (which provides
    its meters, ``snapshot()``, the host, the device filter and the idle floor)."""

    _meters: TrackerMeters | None
    synchronize: Callable[[], object] | None
    total: Measurement | None
    host: str
    device_filter: Callable[[DeviceCounter], bool] | None
    idle_floor: IdleFloor

    def snapshot(self) -> Snapshot:
        raise NotImplementedError

    def mark(self) -> Snapshot:
        """A reading now for a window boundary, its work done later where the meters allow.

        Every measuring meter captures its raw inputs now (see
        :meth:`~mlflow_green.measure.meters.base.Meter.capture`); the counters are worked out when
        the snapshot's ``devices`` are first read, or before any later reading — the same counters as
        :meth:`snapshot` would hold. Where a meter cannot capture (or devices are synchronised
        first), this is :meth:`snapshot`.
        """
        meters = self._meters
        if meters is None or self.synchronize is not None or self.total is not None:
            return self.snapshot()
        pending = object.__new__(PendingSnapshot)  # a window boundary's hot path: no __init__ call, few stores
        state = pending.__dict__
        state["host"], state["_resolve"], state["_filler"] = self.host, meters.resolve, self
        now_s = meters.capture(pending)  # the meters call pending(now_s, counters) once worked out
        if now_s is None:
            return self.snapshot()
        state["timestamp_s"] = now_s  # the same as its fill's (which may have come already)
        return pending

    def energies_j(self, *snapshots: Snapshot) -> list[dict[str, float]]:
        """Each snapshot's counters as energy by device id, for a figure shown at once.

        A snapshot :meth:`mark` captured and not worked out yet is previewed from its capture where
        the meters can tell (the energy its reading will hold, the meters not moved on: the thread
        that accounts for the epoch reads it later); otherwise it is worked out now.
        """
        meters = self._meters if self.device_filter is None else None  # a filter applies when worked out
        energies = []
        for snap in snapshots:
            waiting = isinstance(snap, PendingSnapshot) and snap.__dict__.get("_filler") is not None
            if waiting and meters is not None:
                preview = meters.preview(snap)
                if preview is not None:
                    energies.append(preview)
                    continue
            counters = snap.__dict__.get("_counters_j")  # a snapshot's devices never change: listed once
            if counters is None:
                counters = {d.device_id: d.energy_j for d in snap.devices}
                if not isinstance(snap, PendingSnapshot) or "devices" in snap.__dict__:
                    snap.__dict__["_counters_j"] = counters
            energies.append(counters)
        return energies

    def resolve_marks(self) -> None:
        """Work out the readings :meth:`mark` captured so far (off the training thread)."""
        if self._meters is not None:
            self._meters.resolve_captured()

    def _filled(self, pending: PendingSnapshot, now_s: float, fresh: dict[str, DeviceCounter]) -> None:
        keep = self.device_filter
        pending.fill(now_s, tuple(fresh.values()) if keep is None else tuple(d for d in fresh.values() if keep(d)))
        self.idle_floor.observe(pending)


__all__ = ["MarkedReadings", "PendingSnapshot"]
