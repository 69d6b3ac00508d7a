"""A call's frame up the caller's stack, and whether a call is still running on a thread: its frame on that thread's
stack (any framework's callback).

Example:
    >>> import sys, threading
    >>> frame_on_stack(threading.get_ident(), sys._getframe())
    True
    >>> def fit():
    ...     return nearest_frame(lambda frame: frame.f_code.co_name == "fit")
    >>> fit().f_code.co_name
    'fit'
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType


def nearest_frame(matches: Callable[[FrameType], bool]) -> FrameType | None:
    """The nearest frame that ``matches``, from the caller's up its thread's stack; None if none does."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if matches(frame):
            return frame
        frame = frame.f_back
    return None


def frame_on_stack(thread_id: int, target: FrameType | None) -> bool:
    """True while ``target`` is on thread ``thread_id``'s stack (``sys._current_frames``: tens of microseconds)."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        if frame is target:
            return True
        frame = frame.f_back
    return False


__all__ = ["frame_on_stack", "nearest_frame"]
