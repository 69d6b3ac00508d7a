"""Sees a Keras call leave by an exception raised in Keras's own code as it leaves, not up to two seconds later.

An exception Keras raises between the callbacks' hooks — ``validation_data`` whose inputs and targets
differ in length, found as the first validation begins — leaves ``fit`` with no hook of ours seeing it.
The thread watching the call (:class:`~mlflow_green.integrations._fit_watch.FitWatch`) ended its run
within two looks; meanwhile the run was still MLflow's active run in the user's ``except`` block, where a
``mlflow.start_run()`` raised "Run ... is already active" and ``mlflow.log_param`` wrote into the failed run.

Keras's public calls (``fit``, ``evaluate``, ``predict``) are wrapped by ``traceback_utils.filter_traceback``,
whose handler passes every ``Exception`` leaving the call to ``_process_traceback_frames``. The first watched
call wraps that function for the process's life (it runs only as an exception leaves a call): when the frame
right under the handler's is a watched call's, the call
is leaving with that exception, and its watch ends the measurement then (``FAILED``, the run no longer
active), before the exception reaches the user. Where Keras has no such function, or traceback filtering is
off (``keras.config.disable_traceback_filtering()``), the watching thread still ends it within two looks.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

_WATCHES: weakref.WeakSet[Any] = weakref.WeakSet()
"""The watches (``FitWatch``) of the Keras calls in progress."""
_LOCK = threading.Lock()
_ORIGINAL: list[Any] = []  # Keras's own function, once wrapped


def see_exit(watch: Any) -> None:
    """Have ``watch`` (a ``FitWatch``) told at once when its call leaves by an exception Keras's handler sees."""
    with _LOCK:
        if not _ORIGINAL and not _wrap():
            return
        _WATCHES.add(watch)


def _wrap() -> bool:
    try:
        from keras.src.utils import traceback_utils
    except ImportError:  # another Keras: the watching thread alone
        return False
    original = getattr(traceback_utils, "_process_traceback_frames", None)
    if not callable(original):
        return False
    _ORIGINAL.append(original)

    def process_traceback_frames(traceback: TracebackType | None) -> Any:
        _leaving(traceback)
        return original(traceback)

    traceback_utils._process_traceback_frames = process_traceback_frames
    return True


def _leaving(traceback: TracebackType | None) -> None:
    """In Keras's handler, as an exception leaves a call: the watch of the call whose frame is right under it ends."""
    try:
        below = traceback.tb_next if traceback is not None else None
        exc = sys.exc_info()[1]
        if below is None or exc is None:
            return
        for watch in list(_WATCHES):
            if watch.left_by(below.tb_frame, exc):
                _WATCHES.discard(watch)
    except Exception as err:  # never in the way of the user's exception
        logger.debug("mlflow-green: could not see a Keras call's exit: %r", err)


__all__ = ["see_exit"]
