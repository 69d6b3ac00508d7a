"""The one background thread that polls meters needing it (power sampling, wraparound guards).

It runs only while a selected meter sets ``poll_interval_s``, which may change while the meter
is open (fast while learning a counter's update period, then only for devices without a
counter): the thread follows the current value, and ends when no meter needs it any more (the
tracker starts it again if one does later). It is a daemon thread, stops on ``stop()`` within
one interval, and never lets a meter's exception escape.

Example:
    >>> from mlflow_green.testing import FakeMeter
    >>> s = Sampler([FakeMeter({"cpu:0": 1.0})])
    >>> s.needed
    False
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from mlflow_green.measure.meters.base import Meter

logger = logging.getLogger(__name__)


class Sampler:
    """Calls ``meter.poll(now_s)`` every ``meter.poll_interval_s`` seconds in a daemon thread.

    Args:
        meters: The opened meters; those whose ``poll_interval_s`` is None are not polled.
        clock: Monotonic clock in seconds.
    """

    def __init__(self, meters: Sequence[Meter], clock: Callable[[], float] = time.monotonic) -> None:
        self._meters = list(meters)
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polling = False
        """True from the start of the thread until it stopped (a thread that died of itself: still True)."""
        self._failed: set[str] = set()

    @property
    def needed(self) -> bool:
        """True if any meter asks to be polled now."""
        return bool(self._active())

    def _active(self) -> list[tuple[Meter, float]]:
        active = []
        for meter in self._meters:
            try:
                interval_s = meter.poll_interval_s
            except Exception:  # a broken property must not kill the thread
                interval_s = None
            if interval_s:
                active.append((meter, float(interval_s)))
        return active

    @property
    def running(self) -> bool:
        """True while the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread, if any meter needs polling."""
        if not self.needed or self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mlflow-green-sampler", daemon=True)
        self.polling = True
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (at most about one interval)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            if not self._thread.is_alive():
                self._thread = None
                self.polling = False
            else:  # a meter's poll() is stuck; the daemon thread dies with the process
                logger.warning("mlflow-green: the sampler thread did not stop within 5 s")

    def _run(self) -> None:
        due_s: dict[int, float] = {}
        while not self._stop.is_set():
            active = self._active()
            if not active:
                return  # nothing to poll any more; the tracker restarts the thread if needed
            now_s = self._clock()
            for meter, interval_s in active:
                due_s[id(meter)] = min(due_s.get(id(meter), now_s + interval_s), now_s + interval_s)
            wait_s = max(min(due_s[id(m)] for m, _ in active) - now_s, 0.0)
            if self._stop.wait(wait_s):
                return
            now_s = self._clock()
            for meter, interval_s in active:
                if due_s[id(meter)] > now_s:
                    continue
                due_s[id(meter)] += interval_s
                if due_s[id(meter)] < now_s:  # fell behind (suspended process): don't burst
                    due_s[id(meter)] = now_s + interval_s
                try:
                    meter.poll(now_s)
                except Exception as exc:  # measurement never crashes training
                    if meter.name not in self._failed:
                        self._failed.add(meter.name)
                        logger.warning("mlflow-green: polling meter %r failed: %s", meter.name, exc)
