"""The callback's per-batch work timed inside a real fit, where it runs (not a benchmark itself).

Timed in a loop of 100 000 calls (``_overhead.per_call_us``), the per-batch wrappers and hooks cost
about half a microsecond: their code and data stay in the processor's caches from one call to the
next. In a fit they run once per batch, right after the framework's step has filled those caches
with its own: each first call costs several microseconds then (the caches refilled). A probe
callback of the fits *without* GreenCallback therefore runs, at every batch's end, either that work
or a bare stand-in making the same number of calls, alternately, each timed by
``perf_counter_ns``; the median difference is the work's cost in place. (The probe's own few
microseconds a batch lengthen those fits' epochs by well under 0.1 %.)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


class InFitProbe:
    """Runs ``work`` or ``bare`` (alternately) each time it is called, and times each run.

    Example:
        >>> probe = InFitProbe(lambda: sum(range(1000)), lambda: None)
        >>> for _ in range(10):
        ...     probe()
        >>> probe.samples, probe.cost_us() > 0
        (5, True)
    """

    def __init__(self, work: Callable[[], Any], bare: Callable[[], Any]) -> None:
        self.work, self.bare = work, bare
        self.work_ns: list[int] = []
        self.bare_ns: list[int] = []
        self._calls = 0

    def __call__(self) -> None:
        self._calls += 1
        self.run(work=bool(self._calls % 2))

    def run(self, *, work: bool) -> None:
        """Run and time the work (``work=True``) or the bare stand-in: for a caller that chooses which, e.g. the
        work in the epochs where the fit itself runs the same code (as warm as in a fit with the callback) and the
        bare stand-in in the others."""
        run, times = (self.work, self.work_ns) if work else (self.bare, self.bare_ns)
        start_ns = time.perf_counter_ns()
        run()
        times.append(time.perf_counter_ns() - start_ns)

    @property
    def samples(self) -> int:
        """How many times the work was timed."""
        return len(self.work_ns)

    def cost_us(self) -> float:
        """The median work run minus the median bare run, in microseconds (0 before both were timed)."""
        if not self.work_ns or not self.bare_ns:
            return 0.0
        return max(statistics.median(self.work_ns) - statistics.median(self.bare_ns), 0.0) / 1000


__all__ = ["InFitProbe"]
