"""The calls being measured on each thread, for a fit or an evaluation started inside one (a probe trained from a
callback, a fit inside a ``mlflow_green.track()`` block): it gets a child run of the outer one's run, as two
histories of steps (or two writers of the same totals) would clash in one run.

Example:
    >>> from mlflow_green.training.outer_calls import MeasuredBlock, enter, leave, outer_calls
    >>> block = MeasuredBlock(run=None)
    >>> enter(block)
    >>> block in outer_calls(exclude=None)
    False
    >>> leave(block)
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

logger = logging.getLogger(__name__)

_CALLS: weakref.WeakSet[Any] = weakref.WeakSet()
"""The measured calls (sessions bound for a fit or an evaluation, ``track()`` blocks), until they end."""
_COUNT = 0  # the order calls were entered in (the innermost of nested calls is the last)
_LOCK = threading.Lock()  # enters and leaves on several threads (a fit's watch ends it on its own)


def enter(call: Any) -> None:
    """``call`` (with a ``run`` and an ``_in_call()``) is measured on this thread from now on.

    Another call measured on another thread meanwhile (two trainings in two threads of one process) is warned
    about: the meters measure the process (or the machine), not a thread, so each run holds both trainings'
    energy while they overlap."""
    global _COUNT
    me = threading.get_ident()
    with _LOCK:
        _COUNT += 1
        call._thread, call._bound_seq = me, _COUNT
        elsewhere = [other for other in _CALLS if other is not call and other._thread != me]
        _CALLS.add(call)
    if any(other._in_call() for other in elsewhere):
        logger.warning(
            "mlflow-green: another training or evaluation is measured in another thread of this process; the meters "
            "measure the process, not a thread, so while both run each run holds both's energy (do not add their "
            "energies up). Run concurrent trainings in separate processes to measure each on its own.")


def leave(call: Any) -> None:
    """``call`` ended (never raises if it was not entered)."""
    with _LOCK:
        _CALLS.discard(call)


def outer_calls(exclude: Any) -> list[Any]:
    """The calls other than ``exclude`` measured on this thread now, with a run, outermost first."""
    me = threading.get_ident()
    with _LOCK:
        calls = list(_CALLS)
    return sorted((call for call in calls if call is not exclude and call.run is not None and call._thread == me
                   and call._in_call()), key=lambda call: call._bound_seq)


class MeasuredBlock:
    """A ``mlflow_green.track()`` block as an outer call: a fit measured by a callback inside it gets a child run
    of the block's run (its own phases and epochs), while the block's run holds the whole block's totals."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self._thread, self._bound_seq = 0, 0

    def _in_call(self) -> bool:
        return True


__all__ = ["MeasuredBlock", "enter", "leave", "outer_calls"]
