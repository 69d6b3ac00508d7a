"""The last step of a ``track()`` block, held so that its final totals land at that step, not beside it.

``t.log_step(n)`` logs running totals at step ``n``; the block's end logs the final totals (what ran
after the last step included). Sent at once, the step and the totals would be two points at one
step. So a step's values are *held*: kept in the spool (a training killed then keeps them), not sent,
until the next step (sent then), the block's end (sent with the final totals: one point), or
:data:`RELEASE_AFTER_S` without either (sent, so that the run's page stays live) — the block's end
then logs its totals one step after the last.

Example:
    >>> sent = []
    >>> class Recorder:
    ...     def log_metrics(self, metrics, step): sent.append((step, dict(metrics)))
    ...     def hold_metrics(self, metrics, step): pass
    >>> held = HeldStep(Recorder())
    >>> held.hold({"green/energy_kwh": 1.0}, step=0)  # the step used
    0
    >>> held.hold({"green/energy_kwh": 2.0}, step=1)
    1
    >>> held.finish({"green/energy_kwh": 2.5})  # the step the final totals went to
    1
    >>> sent
    [(0, {'green/energy_kwh': 1.0}), (1, {'green/energy_kwh': 2.5})]
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

RELEASE_AFTER_S = 2.0
"""A held step not followed by another step or the block's end within this long is sent."""


class HeldStep:
    """A ``track()`` block's last step's metrics: held, then sent exactly once (thread-safe; one helper thread,
    started at the first step, waits out the release delay and ends with the block)."""

    def __init__(self, recorder: Any, release_after_s: float = RELEASE_AFTER_S) -> None:
        self._recorder = recorder
        self._release_after_s = release_after_s
        self._cond = threading.Condition(threading.RLock())  # a SIGTERM handler may finish it inside hold()
        self._step: int | None = None
        self._values: dict[str, float] = {}
        self._sent_step: int | None = None
        self._due_s = 0.0
        self._thread: threading.Thread | None = None
        self._finished = False
        self._warned = False

    def hold(self, metrics: Mapping[str, float], step: int) -> int:
        """Hold ``metrics`` at ``step``; a step held before it is sent now (the same step again: merged).

        Steps only go up (one point per step): a step lower than the one held, or one already sent, is logged
        at the next free step instead, with a warning (once). Returns the step used.
        """
        with self._cond:
            floor = max(s for s in (self._step, self._sent_step, -1) if s is not None)
            if step < floor or (step == floor and step == self._sent_step and self._step is None):
                if not self._warned:
                    self._warned = True
                    logger.warning("mlflow-green: log_step(%s) after step %s: steps only go up (one point per step); "
                                   "logged at step %s instead", step, floor, floor + 1)
                step = floor + 1
            if self._step is not None and self._step != step:
                self._send()
            self._values = {**(self._values if self._step == step else {}), **metrics}
            self._step = step
            self._recorder.hold_metrics(self._values, step)
            self._due_s = time.monotonic() + self._release_after_s
            if self._thread is None and not self._finished:
                self._thread = threading.Thread(target=self._release_when_due, name="mlflow-green-held-step", daemon=True)
                self._thread.start()
            self._cond.notify()
            return step

    def finish(self, totals: Mapping[str, float]) -> int | None:
        """Send the final ``totals``: with the held step; else one step after the last one sent (None if no step
        was ever held: the caller logs them as the block's only point). Returns the step used."""
        with self._cond:
            self._finished = True
            self._cond.notify()
            if self._step is not None:
                step, values = self._step, {**self._values, **totals}
                self._step, self._values = None, {}
                self._recorder.log_metrics(values, step=step)
                return step
            if self._sent_step is None:
                return None
            self._recorder.log_metrics(dict(totals), step=self._sent_step + 1)
            return self._sent_step + 1

    def _release_when_due(self) -> None:
        with self._cond:
            while not self._finished:
                wait_s = self._due_s - time.monotonic() if self._step is not None else None
                if wait_s is not None and wait_s <= 0:
                    try:
                        self._send()
                    except Exception as exc:  # measurement never breaks training: the block's end sends the totals
                        logger.debug("mlflow-green: could not send a held step: %r", exc)
                        self._step = None
                    continue
                self._cond.wait(wait_s)

    def _send(self) -> None:
        if self._step is not None:
            self._recorder.log_metrics(self._values, step=self._step)
            self._sent_step, self._step, self._values = self._step, None, {}


__all__ = ["RELEASE_AFTER_S", "HeldStep"]
