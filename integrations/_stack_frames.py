"""Whether a call is still running on a thread: its frame on that thread's stack (any framework's callback).

Example:
    >>> import sys, threading
    >>> frame_on_stack(threading.get_ident(), sys._getframe())
    True
"""

from __future__ import annotations

import sys
from types import FrameType


def frame_on_stack(thread_id: int, target: FrameType | None) -> bool:
    """True while ``target`` is on thread ``thread_id``'s stack (``sys._current_frames``: tens of microseconds)."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        if frame is target:
            return True
        frame = frame.f_back
    return False


__all__ = ["frame_on_stack"]
