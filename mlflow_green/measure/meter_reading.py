"""The meters of one running tracker: opened, read under one lock, polled by one thread, closed.

Nothing here raises for a meter's failure. A meter whose ``read()`` raises is quarantined by the :class:`~mlflow_green.measure.failover.MeterRoster`
(its components pass to the next meter by priority, opened now); a device that reads nonsense is
quarantined alone by the :class:`~mlflow_green.measure.device_guard.DeviceGuard`.

Example:
    >>> from mlflow_green.measure.device_guard import DeviceGuard
    >>> from mlflow_green.measure.failover import MeterRoster
    >>> from mlflow_green.measure.selection import select_meters
    >>> from mlflow_green.testing import FakeMeter
    >>> roster = MeterRoster(select_meters([FakeMeter({"cpu:0": 10.0})]), explicit=False, start_s=0.0)
    >>> roster.start(0.0)
    >>> faults = []
    >>> counters = read_counters(roster, DeviceGuard(0.0), 1.0, lambda m, text: faults.append(text))
    >>> sorted(counters), faults
    (['cpu:0'], [])
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import Any

from mlflow_green.measure import shared_meters
from mlflow_green.measure.attribution import Attribution
from mlflow_green.measure.device_guard import DeviceGuard
from mlflow_green.measure.failover import MeterRoster, safe
from mlflow_green.measure.meters.base import Meter
from mlflow_green.measure.readings import DeviceCounter
from mlflow_green.measure.sampler import Sampler
from mlflow_green.measure.selection import MeterSelection
from mlflow_green.measure.signal_safety import raised_by_signal_handler

logger = logging.getLogger(__name__)


def read_counters(
    roster: MeterRoster,
    guard: DeviceGuard,
    now_s: float,
    fault: Callable[[Meter, str], None],
    replaced: Callable[[], object] = lambda: None,
    captured: Mapping[int, object] | None = None,
) -> dict[str, DeviceCounter]:
    """Every device's cumulative counter at ``now_s``, by device id; never raises for a meter failure.

    Args:
        roster: The tracker's meters (which measures each component, failed ones, carried devices).
        guard: Quarantines a device that reads nonsense.
        now_s: The instant of the read (the tracker's clock).
        fault: Called with (meter, message) for everything worth a line in ``faults``.
        replaced: Called after a meter failed over to others (the tracker restarts its sampler).
        captured: What meters captured at ``now_s`` (by ``id(meter)``): those are read from it
            (:meth:`~mlflow_green.measure.meters.base.Meter.read_captured`), the others now.
    """
    fresh: dict[str, DeviceCounter] = {}
    pending = list(roster.plan())  # the hot path: no meter failed since the last read
    carry, check = roster.carry, guard.check
    while pending:
        meter, wanted, reports_faults = pending.pop(0)
        raw = captured.get(id(meter)) if captured else None
        try:
            readings = meter.read(now_s) if raw is None else meter.read_captured(now_s, raw)
        except Exception as exc:  # measurement never crashes training
            if raised_by_signal_handler(exc):  # a SIGTERM's handler raised in the read: not the meter's failure
                raise
            replacements = roster.fail_over(meter, now_s, f"read() failed: {exc}")
            replaced()
            queued = {id(m) for m, _, _ in pending} | {id(m) for m in replacements}
            pending = [step for step in roster.plan() if id(step[0]) in queued]  # with what each measures now
            continue
        if reports_faults:
            for message in safe(meter.take_faults, []):
                fault(meter, message)
        for reading in readings:  # a device that reads nonsense is quarantined alone
            if reading.component not in wanted:
                continue
            checked, message = check(reading, now_s)
            if message:
                fault(meter, message)
            if checked is not None:
                fresh[reading.device_id] = roster.with_carry(checked) if carry else checked
    if carry:
        fresh.update(roster.carried_now(now_s, fresh))
    last_good = roster.last_good
    for device_id, device in fresh.items():
        last_good[device_id] = (now_s, device)
    return fresh


def close_meters(meters: Iterable[Meter]) -> dict[str, Any]:
    """Ask each meter for its report, then close it; returns meter name -> non-empty report."""
    reports: dict[str, Any] = {}
    for meter in meters:
        try:
            report = dict(meter.report())
            if report:
                reports[meter.name] = report
        except Exception as exc:
            logger.debug("meter %s could not report: %s", meter.name, exc)
        try:
            if shared_meters.last_user(meter):  # else a measurement running meanwhile still reads it
                meter.close()
        except Exception as exc:
            logger.debug("closing meter %s failed: %s", meter.name, exc)
    return reports


class TrackerMeters:
    """The selected meters of one started tracker: opened now, read safely, polled by one sampler thread.

    Args:
        selection: The outcome of meter selection.
        explicit: The user named the meters (their order is the priority).
        clock: The tracker's monotonic clock in seconds.
        fault: Called with (meter, message) for everything worth a line in the tracker's ``faults``.
        attribution: Whose energy the meters bill.
        sample_interval_s: Handed to meters that sample.
    """

    def __init__(
        self,
        selection: MeterSelection,
        *,
        explicit: bool,
        clock: Callable[[], float],
        fault: Callable[[Meter, str], None],
        attribution: Attribution,
        sample_interval_s: float,
    ) -> None:
        self._clock = clock
        self._fault = fault
        self._lock = threading.Lock()
        now_s = clock()
        self.guard = DeviceGuard(now_s)
        self.roster = MeterRoster(
            selection,
            explicit=explicit,
            start_s=now_s,
            fault=fault,
            attribution=attribution,
            sample_interval_s=sample_interval_s,
        )
        self.roster.start(now_s)
        self.sampler: Sampler | None = None
        self._captured: deque[tuple[float, dict[int, object], Callable[[float, dict[str, DeviceCounter]], None]]] = deque()
        self._previewed: dict[int, dict[str, float]] = {}  # id(resolved) -> counters, for the first captures waiting
        self._preview_state: object = None  # the meter's state after the last capture previewed
        self._direct: tuple[object, int, Callable[[], object | None] | None] | None = None  # see capture()
        self.resolve = self.resolve_captured  # one bound method, handed to every capture's snapshot
        self.restart_sampler()

    def read(self) -> tuple[float, dict[str, DeviceCounter]]:
        """The clock and every device's counter, read together under the lock (see :func:`read_counters`).

        Captures not turned into reads yet are first, in order (a meter's state moves forward only).
        """
        with self._lock:
            if self._captured:
                self._resolve_captured()
            now_s = self._clock()
            return now_s, read_counters(self.roster, self.guard, now_s, self._fault, replaced=self._replaced)

    def capture(self, resolved: Callable[[float, dict[str, DeviceCounter]], None]) -> float | None:
        """A read now whose work is done later: every measuring meter captures its raw inputs now.

        Returns the instant of the capture, or None when a meter cannot capture (then nothing was
        taken: read at once). ``resolved(now_s, counters)`` is called with the read once it is
        worked out — by :meth:`resolve_captured`, or before the next :meth:`read` — in capture order.
        """
        with self._lock:
            if self.sampler is not None and self.sampler.polling:  # a polled meter moves between captures
                return None
            plan = self.roster.plan()
            direct = self._direct
            if direct is None or direct[0] is not plan:  # worked out once per assignment of the meters
                capturer = plan[0][0].capturer() if len(plan) == 1 else None
                direct = self._direct = (plan, id(plan[0][0]) if plan else 0, capturer)
            now_s = self._clock()
            if direct[2] is not None:  # one meter, with a direct capture (a window boundary's usual case)
                try:
                    raw = direct[2]()
                except Exception as exc:
                    if raised_by_signal_handler(exc):
                        raise
                    return None
                if raw is None:
                    return None
                self._captured.append((now_s, {direct[1]: raw}, resolved))
                return now_s
            raws: dict[int, object] = {}
            for meter, _, _ in plan:
                try:
                    raw = meter.capture(now_s)
                except Exception as exc:  # a capture that fails is a read done at once
                    if raised_by_signal_handler(exc):
                        raise
                    raw = None
                if raw is None:
                    return None
                raws[id(meter)] = raw
            self._captured.append((now_s, raws, resolved))
            return now_s

    def preview(self, resolved: object) -> dict[str, float] | None:
        """The counters (device id -> joules) of the capture handed ``resolved``, worked out without moving
        the meters on: a figure shown at once, the read left to whoever works the captures out.

        Each capture is previewed once, in order, from where the previous preview left off; the
        previews are dropped when the captures are worked out. None where reading is the only way to
        tell: the capture is not waiting, several meters measure, a failed meter's devices are carried,
        a counter was rebased, or the meter cannot preview.
        """
        with self._lock:
            previewed = self._previewed
            counters = previewed.get(id(resolved))
            if counters is not None or not self._captured:
                return counters
            plan = self.roster.plan()
            if len(plan) != 1 or self.roster.carry or self.guard.rebased:
                return None
            meter, wanted, _ = plan[0]
            new = list(islice(self._captured, len(previewed), None))
            try:
                previews = meter.preview_captured([(now_s, raws.get(id(meter))) for now_s, raws, _ in new], wanted,
                                                  self._preview_state)
            except Exception as exc:  # reading will tell (and deal with the failure)
                if raised_by_signal_handler(exc):
                    raise
                return None
            if previews is None or len(previews[0]) != len(new):
                return None
            for (_, _, later), counters in zip(new, previews[0]):
                previewed[id(later)] = counters
            self._preview_state = previews[1]
            return previewed.get(id(resolved))

    def resolve_captured(self) -> None:
        """Work out the reads captured so far (in order; from any thread)."""
        with self._lock:
            self._resolve_captured()

    def _resolve_captured(self) -> None:
        try:
            while self._captured:
                now_s, raws, resolved = self._captured[0]
                resolved(now_s, read_counters(self.roster, self.guard, now_s, self._fault, replaced=self._replaced,
                                              captured=raws))
                self._captured.popleft()  # read: a signal's error before this leaves it queued, read later
        finally:  # the captures read (all, or up to a signal's error): a later preview starts from the meters' state
            self._previewed.clear()
            self._preview_state = None

    def _replaced(self) -> None:
        """Meters failed over while the sampler runs: it must poll the replacements too."""
        if self.sampler is not None:
            self.restart_sampler()

    def restart_sampler(self) -> None:
        """A new sampler thread over the meters measuring now (started only if one needs polling)."""
        if self.sampler is not None:
            self.sampler.stop()
        self.sampler = Sampler(self.roster.active(), clock=self._clock)
        self.sampler.start()

    def ensure_sampler(self) -> None:
        """Start the thread again if a meter has come to need it since (a shared GPU, say)."""
        if self.sampler is not None and not self.sampler.running and self.sampler.needed:
            self.sampler.start()

    def stop_sampler(self) -> None:
        """Stop the sampler thread (before the final counters are kept)."""
        if self.sampler is not None:
            self.sampler.stop()

    def close(self) -> dict[str, Any]:
        """Close every opened meter; returns meter name -> its non-empty report."""
        return close_meters(list(self.roster.opened.values()))

    def update_periods_s(self) -> dict[str, float]:
        """Every opened meter's known counter update periods (device id -> seconds)."""
        return self.roster.update_periods_s()

    def meters_tag(self) -> str:
        """The ``green.meters`` tag (see :meth:`~mlflow_green.measure.failover.MeterRoster.meters_tag`)."""
        return self.roster.meters_tag()
