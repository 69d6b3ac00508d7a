"""Sees a training call end by an exception that no callback hook sees.

Keras: ``fit`` builds the validation's data iterator, syncs state and gathers logs between the hooks: an
error there (``validation_data`` whose inputs and targets differ in length, a validation generator
that fails as Keras peeks at it) leaves ``fit`` without ``on_train_end`` and outside every function
:class:`~mlflow_green.integrations._keras_guard.CallGuard` wraps. A thread looks, every
:data:`LOOK_INTERVAL_S`: if a training step finished since its last look, ``fit`` is running (an attribute
read); if none did, whether ``fit``'s frame is still on its thread's stack (``sys._current_frames`` and a
walk up the stack: tens of microseconds, off the training thread). Once it is not, the measurement ends
``FAILED`` then — at most two intervals after ``fit`` raised, not when the process exits.

Hugging Face: a callback added to its ``Trainer`` after the Trainer was made finds ``train()`` already
running unwrapped (see :mod:`~mlflow_green.integrations._hf_trainer`); an exception raised in it outside a
training step (data loading, an evaluation, another callback) is seen by this watch (``activity``: the
optimizer steps done).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from mlflow_green.integrations._stack_frames import frame_on_stack
from mlflow_green.training import outer_calls

logger = logging.getLogger(__name__)

LOOK_INTERVAL_S = 1.0
"""Seconds between two looks (each wake-up of an idle thread costs more than the look: 0.5 s cost 0.7 ms of CPU a
~0.7 s epoch of the digits zoo, ``benchmarks/callback_overhead_keras.py``)."""


LEFT_MESSAGE = "the training call ended by an exception raised outside the callbacks and steps"


class FitLeft(RuntimeError):
    """The call (Keras's ``fit``, Hugging Face's ``train``) ended without ``on_train_end`` (an exception raised in
    the framework's own code)."""


class FitWatch:
    """Calls ``on_left()`` once if ``frame`` leaves the stack of the thread running it before :meth:`stop`
    (``activity()``: a count that moves while the frame surely runs, e.g. training steps finished)."""

    def __init__(self, frame: FrameType, on_left: Callable[[BaseException], None], activity: Callable[[], int]) -> None:
        self._frame: FrameType | None = frame
        self._activity = activity  # training steps finished so far
        self.thread_id = threading.get_ident()
        self._on_left = on_left
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="mlflow-green-fit-watch", daemon=True)
        self._thread.start()
        outer_calls.may_end_unseen(self)  # a fit, evaluation or track() block beginning meanwhile ends it if it left

    def stop(self) -> None:
        """The fit ended through a hook: stop watching (the frame is no longer held)."""
        self._stop.set()
        self._frame = None
        outer_calls.seen_to_end(self)

    def end_if_left(self) -> None:
        """As another measurement begins (before this watch's next look): if the fit has left, it ends now."""
        if self._frame is None or self._stop.is_set() or not self.left():
            return
        self.stop()
        self._on_left(FitLeft(LEFT_MESSAGE))

    def left_by(self, frame: FrameType, exc: BaseException) -> bool:
        """``frame`` is leaving by ``exc`` (seen in the framework's own exception handler, on the call's thread): if it
        is the watched one, the measurement ends now, with ``exc`` (see :mod:`~mlflow_green.integrations._keras_raised`).
        True if it was."""
        if frame is not self._frame or self._stop.is_set():
            return False
        self.stop()
        self._on_left(exc)
        return True

    def left(self) -> bool:
        """True if ``fit`` is no longer running (asked from any thread; False once stopped): a hook of another
        call (``evaluate`` right after ``fit`` raised in Keras's own code) can tell before the thread looks."""
        target = self._frame
        if target is None:
            return False
        if threading.get_ident() != self.thread_id:
            return not self._running()
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:  # fit's own hooks: a few frames up
            if frame is target:
                return False
            frame = frame.f_back
        return True

    def _running(self) -> bool:
        return self._frame is not None and frame_on_stack(self.thread_id, self._frame)

    def _watch(self) -> None:
        steps = -1
        while not self._stop.wait(LOOK_INTERVAL_S):
            try:
                steps, before = self._activity(), steps
                if steps != before or self._running():  # a step since the last look: no need to walk the stack
                    continue
            except Exception as exc:  # never a reason to end a measurement
                logger.debug("mlflow-green: could not look at fit's frame: %r", exc)
                continue
            if self._stop.is_set():
                return
            self._frame = None
            outer_calls.seen_to_end(self)
            try:
                self._on_left(FitLeft(LEFT_MESSAGE))
            except Exception as exc:  # measurement never breaks training
                logger.warning("mlflow-green: could not end the measurement of a failed fit: %s", exc)
            return


def open_fit_status(guard: Any) -> str:
    """The status of a fit still open as the same callback's next fit begins (``guard``: that fit's ``CallGuard``):
    ``FAILED`` — and a warning when that fit is still running (the callback was given to a fit started inside the
    fit it measures: a probe's)."""
    if guard is not None and not guard.aborted and guard.fit_running():
        logger.warning("mlflow-green: this GreenCallback was given to a fit started inside the fit it measures; the outer "
                       "fit's run ends here (FAILED) and its later epochs are not logged. Give the inner fit a "
                       "GreenCallback() of its own: it gets a child run, and the outer one goes on.")
    return "FAILED"


__all__ = ["LEFT_MESSAGE", "LOOK_INTERVAL_S", "FitLeft", "FitWatch", "open_fit_status"]
