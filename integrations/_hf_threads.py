"""One Hugging Face callback given to two Trainers that run at once in two threads.

One instance measures one call at a time (a ``train()``, or an ``evaluate()`` / ``predict()``
outside it). While it does, a call of another Trainer in another thread goes unmeasured, with a
warning: for that call the callback is swapped out of that Trainer's callbacks (so none of its
events reach the measurement in progress) and put back when the call returns. The call that
started first is measured whole, as with the Keras and Lightning callbacks.

Example:
    >>> owner = CallOwner.here()
    >>> owner.elsewhere()  # the measuring call runs in this thread
    False
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

from mlflow_green.integrations._stack_frames import frame_on_stack, nearest_frame

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallOwner:
    """The thread of the call a callback measures, and that call's frame (None: the thread's life stands for it)."""

    thread_id: int
    frame: FrameType | None = None

    @classmethod
    def here(cls, frame: FrameType | None = None) -> CallOwner:
        return cls(threading.get_ident(), frame)

    def __reduce__(self) -> tuple[Any, ...]:  # a copy of the callback (pickle, deepcopy) keeps the thread, not the frame
        return (CallOwner, (self.thread_id, None))

    def elsewhere(self) -> bool:
        """True while the measured call runs in a thread other than this one."""
        if self.thread_id == threading.get_ident():
            return False
        if self.frame is None:
            return any(t.ident == self.thread_id and t.is_alive() for t in threading.enumerate())
        return frame_on_stack(self.thread_id, self.frame)


def frame_of(name: str, instance: Any = None) -> FrameType | None:
    """The nearest caller frame of the function ``name`` (a method of ``instance``, if given)."""
    return nearest_frame(lambda frame: frame.f_code.co_name == name and (instance is None or frame.f_locals.get("self") is instance))


def _warn(method: str) -> None:
    logger.warning("mlflow-green: this GreenCallback is measuring a Trainer's call in another thread; this %s (thread %s) "
                   "goes unmeasured. Give each Trainer its own GreenCallback().", method, threading.current_thread().name)


@contextlib.contextmanager
def stood_aside(trainer: Any, callback: Any, method: str) -> Iterator[None]:
    """For one call of ``trainer``: ``callback`` out of its callbacks (a warning says so), back in afterwards."""
    from transformers import TrainerCallback

    listed = getattr(getattr(trainer, "callback_handler", None), "callbacks", None)
    positions = [i for i, cb in enumerate(listed or []) if cb is callback]
    for i in positions:
        listed[i] = TrainerCallback()  # type: ignore[index]
    if positions:  # else out already: an evaluation inside a training that stands aside (warned about once)
        _warn(method)
    try:
        yield
    finally:
        for i in positions:
            if i < len(listed) and type(listed[i]) is TrainerCallback:  # type: ignore[arg-type]
                listed[i] = callback  # type: ignore[index]


def stand_in(trainer: Any, callback: Any) -> None:
    """From ``on_train_begin`` of a ``train()`` the wrapper did not see (the callback added after the Trainer was
    made): ``callback`` swapped out for this training, put back at its end (or at the next one's start)."""
    from transformers import TrainerCallback

    class StandIn(TrainerCallback):
        _green_original = callback

        def _back(self) -> None:
            put_back(trainer, callback)

        def on_train_end(self, *args: Any, **kwargs: Any) -> None:
            self._back()

        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:  # a training that raised left it in place
            self._back()
            callback.on_train_begin(*args, **kwargs)

    listed = getattr(getattr(trainer, "callback_handler", None), "callbacks", None) or []
    for i, cb in enumerate(listed):
        if cb is callback:
            listed[i] = StandIn()
    _warn("train")


def put_back(trainer: Any, callback: Any) -> None:
    """``callback`` back in ``trainer``'s callbacks in place of a :func:`stand_in` left there (a training that
    stood aside and raised: no ``on_train_end``)."""
    listed = getattr(getattr(trainer, "callback_handler", None), "callbacks", None) or []
    for i, cb in enumerate(listed):
        if getattr(cb, "_green_original", None) is callback:
            listed[i] = callback


__all__ = ["CallOwner", "frame_of", "put_back", "stand_in", "stood_aside"]
