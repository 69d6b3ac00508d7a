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
_UNSEEN: weakref.WeakSet[Any] = weakref.WeakSet()
"""Calls that can end without any hook seeing it, each with an ``end_if_left()`` (see :func:`may_end_unseen`)."""
_COUNT = 0  # the order calls were entered in (the innermost of nested calls is the last)
_LOCK = threading.Lock()  # enters and leaves on several threads (a fit's watch ends it on its own)


def enter(call: Any) -> None:
    """``call`` (with a ``run`` and an ``_in_call()``) is measured on this thread from now on (entered again on the same
    thread before it left — an evaluation's run bound as it ends — it is the same call: warned about once).

    Another call measured on another thread meanwhile (two trainings in two threads of one process) is warned
    about: the meters measure the process (or the machine), not a thread, so each run holds both trainings'
    energy while they overlap."""
    global _COUNT
    me = threading.get_ident()
    with _LOCK:
        if call not in _CALLS or call._thread != me:  # else entered as its evaluation began, its run bound as it ends
            _COUNT += 1
            call._thread, call._bound_seq, call._overlap_warned, call._overlapped = me, _COUNT, False, False
            _CALLS.add(call)
    warn_if_concurrent(call)


def warn_if_concurrent(call: Any) -> None:
    """Warn (once for ``call``'s binding) when a call measured on another thread than ``call``'s is in progress now,
    or began while ``call`` was (it marked ``call`` then).

    Looked for as ``call`` binds its run (:func:`enter`), as its fit's first epoch begins, as each of its epochs is
    accounted for (in the background) and as it ends: two fits starting together in two threads were both bound
    before either had begun, and neither warned; a fit measured while a shorter call came and went in another thread
    between two of its looks was never told. A call that finds another in progress warns for itself and marks the
    other, which warns at its next look."""
    if getattr(call, "_overlap_warned", False):
        return
    mine = call._thread
    with _LOCK:
        elsewhere = [other for other in _CALLS if other is not call and other._thread != mine]
    busy = [other for other in elsewhere if other._in_call()]
    if busy or getattr(call, "_overlapped", False):
        call._overlap_warned = True
        for other in busy:
            other._overlapped = True
        logger.warning(
            "mlflow-green: another training or evaluation is measured in another thread of this process; the meters "
            "measure the process, not a thread, so while both run each run holds both's energy (do not add their "
            "energies up). Run concurrent trainings in separate processes to measure each on its own.")


def leave(call: Any) -> None:
    """``call`` ended (never raises if it was not entered)."""
    with _LOCK:
        _CALLS.discard(call)


def may_end_unseen(call: Any) -> None:
    """``call`` can end without any hook seeing it — a Keras ``fit`` left by an exception raised in Keras's own code,
    which a thread sees within two looks — until :func:`seen_to_end`. Meanwhile its run is still MLflow's active run:
    a fit, evaluation or ``track()`` block beginning then would take it for the user's run and log into the failed
    one. So each, as it picks its run (:func:`outer_calls`), first has every such call ``end_if_left()``: one that has
    left ends then (its status and totals, its run no longer active)."""
    with _LOCK:
        _UNSEEN.add(call)


def seen_to_end(call: Any) -> None:
    """``call`` ended (or will end) where a hook sees it."""
    with _LOCK:
        _UNSEEN.discard(call)


def _end_calls_left() -> None:
    with _LOCK:
        unseen = list(_UNSEEN)
    for call in unseen:
        try:
            call.end_if_left()
        except Exception as exc:  # never a reason to stop the measurement beginning
            logger.warning("mlflow-green: could not end the measurement of a call that has ended: %r", exc)


def outer_calls(exclude: Any) -> list[Any]:
    """The calls other than ``exclude`` measured on this thread now, with a run, outermost first (after ending every
    call that has left unseen, see :func:`may_end_unseen`)."""
    _end_calls_left()
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


__all__ = ["MeasuredBlock", "enter", "leave", "may_end_unseen", "outer_calls", "seen_to_end", "warn_if_concurrent"]
