"""Named windows of a tracker (an epoch, a phase) and how ``meters=`` is split into names and instances.

:class:`NamedWindows` is the window half of :class:`~mlflow_green.measure.tracker.EnergyTracker`
(``begin``/``end``/``window``, the granularity check); the tracker supplies the snapshots.

Example:
    >>> split_meters("nvml, rapl")
    ([], ['nvml', 'rapl'])
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mlflow_green.errors import ConfigError, TrackerStateError
from mlflow_green.measure.granularity import GranularityCheck
from mlflow_green.measure.meters.base import Meter
from mlflow_green.measure.readings import Measurement, Snapshot

MeterSpec = str | Meter


@dataclass(frozen=True)
class WindowRecord:
    """A closed window: its name, when it began (seconds after start) and what it measured."""

    name: str
    start_offset_s: float
    measurement: Measurement

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view for ``report.json``."""
        return {"name": self.name, "start_offset_s": self.start_offset_s, **self.measurement.to_dict()}


class WindowResult:
    """Filled in when a :meth:`~mlflow_green.measure.tracker.EnergyTracker.window` block exits."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.measurement: Measurement | None = None


class NamedWindows:
    """Named windows over a tracker's snapshots: ``begin``/``end``/``window`` and the granularity check.

    Mixed into :class:`~mlflow_green.measure.tracker.EnergyTracker`, which provides ``running``,
    ``snapshot()``, the start snapshot and the counters' update periods.
    """

    _open_windows: dict[str, Snapshot]
    last_window_end: Snapshot | None = None
    """The reading that closed the last window (see :meth:`end`)."""
    _start: Snapshot | None
    _windows: list[WindowRecord]
    _closed: list[tuple[str, Snapshot, Snapshot]]
    granularity: GranularityCheck
    total: Measurement | None

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def snapshot(self) -> Snapshot:
        raise NotImplementedError

    def mark(self) -> Snapshot:
        raise NotImplementedError

    def _update_periods_s(self) -> dict[str, float]:
        raise NotImplementedError

    def begin(self, name: str) -> Snapshot:
        """Open the window ``name`` (an epoch, a phase); returns its start snapshot."""
        if not self.running:
            raise TrackerStateError(f"begin({name!r}) called while the tracker is not running")
        snap = self.mark()
        self._open_windows[name] = snap
        return snap

    def end(self, name: str) -> Measurement:
        """Close the window ``name`` and return what it measured (its end reading is :attr:`last_window_end`)."""
        begin, end = self.close(name)
        self._record_closed()
        return end - begin

    def opened(self, name: str) -> Snapshot | None:
        """The start reading of the window ``name`` if it is open (begun, not closed), else None."""
        return self._open_windows.get(name)

    def close(self, name: str) -> tuple[Snapshot, Snapshot]:
        """Close the window ``name`` with a reading now; returns its (begin, end) readings.

        The cheap form of :meth:`end` for a caller that works the measurement out later (a training
        session, off its training thread): the window's record and its granularity check are made
        when :attr:`windows` is next read.
        """
        begin = self._open_windows.pop(name, None)
        if begin is None:
            raise TrackerStateError(f"end({name!r}) called without a matching begin({name!r})")
        end = self.last_window_end = self.mark()
        self._closed.append((name, begin, end))
        return begin, end

    @property
    def windows(self) -> list[WindowRecord]:
        """Every closed window, in the order closed (with what it measured)."""
        self._record_closed()
        return self._windows

    def _record_closed(self) -> None:
        """Record the windows closed since the last call, and check their granularity."""
        while self._closed:
            name, begin, end = self._closed.pop(0)
            measurement = end - begin
            offset_s = begin.timestamp_s - (self._start.timestamp_s if self._start else begin.timestamp_s)
            self._windows.append(WindowRecord(name, offset_s, measurement))
            self.check_granularity(measurement, name)

    def check_granularity(self, measurement: Measurement, name: str) -> bool:
        """Flag (in report.json, and once in the log) a window shorter than 10 counter update periods.

        The tracker checks its own windows; callers that subtract snapshots themselves (epochs)
        call this with their window. Returns True when the window is flagged.
        """
        return self.granularity.check(measurement, name, self._update_periods_s() if self.total is None else {})

    @property
    def counter_update_period_s(self) -> float | None:
        """The slowest known update period of the counters in use, in seconds (None: none known yet).

        NVML learns its counters' periods in the first second or two after start.
        """
        periods = {**self.granularity.periods_s, **(self._update_periods_s() if self.total is None else {})}
        return max(periods.values()) if periods else None

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator[WindowResult]:
        """Measure a ``with`` block; the result's ``measurement`` is set when the block exits."""
        result = WindowResult(name)
        self.begin(name)
        try:
            yield result
        finally:
            result.measurement = self.end(name)


def split_meters(meters: str | Sequence[MeterSpec] | None) -> tuple[list[Meter], list[str]]:
    """``meters=`` as (instances, names).

    Raises:
        ConfigError: for anything but names and :class:`~mlflow_green.measure.meters.base.Meter` instances.
    """
    if meters is None:
        return [], []
    if isinstance(meters, str):
        return [], [m.strip() for m in meters.split(",") if m.strip()]
    if isinstance(meters, Meter):
        return [meters], []
    if not isinstance(meters, Sequence):
        raise ConfigError(
            f"meters= takes meter names ('rapl,estimate' or a list) or Meter instances, got {type(meters).__name__}: {meters!r}"
        )
    injected: list[Meter] = []
    names: list[str] = []
    for item in meters:
        if isinstance(item, Meter):
            injected.append(item)
        elif isinstance(item, str):
            names.append(item)
        else:
            raise ConfigError(f"meters= takes meter names or Meter instances, got {type(item).__name__}: {item!r}")
    return injected, names
