"""Sees a Lightning call in a thread other than the main one end without ``on_exception`` or ``teardown``.

Lightning ends every failed ``fit`` / ``validate`` / ``test`` / ``predict`` through its callbacks'
``on_exception`` and ``teardown`` (``trainer/call.py``) — except a ``KeyboardInterrupt`` outside the main
thread: its handler first ignores SIGINT with ``signal.signal``, which raises ``ValueError`` there, so no
hook runs. The callback's run stayed ``RUNNING`` and active in that thread (the thread's next fit became its
child run) and the callback stood aside from every later call as busy in that thread.

:class:`CallWatch` watches the call's frame (:class:`~mlflow_green.integrations._fit_watch.FitWatch`, a
look every second off the training thread) in such threads only: once the frame has left the stack
without a hook having ended the call, the callback's ``on_exception`` and ``teardown`` run then (``FAILED``,
with the energy until then; the callback free again), or sooner, as the next call of the callback begins.
"""

from __future__ import annotations

import threading
from types import FrameType
from typing import Any

from mlflow_green.integrations._fit_watch import FitWatch
from mlflow_green.integrations._stack_frames import nearest_frame


def call_frame() -> FrameType | None:
    """The frame of Lightning's ``_call_and_handle_interrupt`` nearest up this thread's stack, None if none."""
    return nearest_frame(lambda frame: frame.f_code.co_name == "_call_and_handle_interrupt"
                         and str(frame.f_globals.get("__name__", "")).endswith("trainer.call"))


def stopped(watch: CallWatch | None) -> None:
    """Stop ``watch`` (if any): its call ends through a hook; returns None (the callback holds no watch then)."""
    if watch is not None:
        watch.stop()


class CallWatch:
    """Ends ``callback``'s measurement of a call that left unseen (see the module).

    Example:
        >>> CallWatch.start(None, None, None, "fit") is None  # the main thread: Lightning's hooks always run there
        True
    """

    def __init__(self, callback: Any, trainer: Any, module: Any, stage: str, frame: FrameType) -> None:
        self._callback, self._trainer, self._module, self._stage = callback, trainer, module, stage
        self._lock, self._ended = threading.RLock(), False  # re-entered: the hooks it calls stop it
        self._watch = FitWatch(frame, self._left, lambda: getattr(trainer, "global_step", 0))

    @classmethod
    def start(cls, callback: Any, trainer: Any, module: Any, stage: str, previous: CallWatch | None = None) -> CallWatch | None:
        """A watch of the call in progress on this thread (None on the main thread, or outside a Lightning call);
        ``previous`` (the callback's last) ends its call first if that left unseen, and stops."""
        if previous is not None:
            previous.settle()
            previous.stop()
        if threading.current_thread() is threading.main_thread():
            return None
        frame = call_frame()
        return cls(callback, trainer, module, stage, frame) if frame is not None else None

    def settle(self) -> None:
        """If the call has left unseen, end its measurement now (or wait for the watching thread doing so)."""
        self._watch.end_if_left()
        with self._lock:
            pass

    def stop(self) -> None:
        """The call ends through a hook: nothing to do."""
        with self._lock:
            self._ended = True
        self._watch.stop()

    def _left(self, exc: BaseException) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
            self._callback.on_exception(self._trainer, self._module, exc)
            self._callback.teardown(self._trainer, self._module, self._stage)


__all__ = ["CallWatch", "call_frame", "stopped"]
