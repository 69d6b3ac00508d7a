"""Signals held while a measurement ends: delivered as the block ends, as they would have been.

The end of a measurement (the final read, the totals, ``green/report.json``, the run's end) must not
be cut short by a handler that raises there — Lightning's SIGTERM handler, Python's Ctrl-C — which
would leave a run without its report. :func:`sigterm_held` holds one signal for the length of a
block; :func:`signals_held` holds SIGTERM and SIGINT together, as a fit's end does. A process forked meanwhile
(or while a :class:`~mlflow_green.training.termination.SigtermWatch` holds SIGTERM) gets SIGTERM back as it was
(the at-fork handlers here, with the registries of holds and watches they read).

Example:
    >>> with signals_held():
    ...     pass  # a SIGTERM or Ctrl-C here is delivered on leaving the block
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from mlflow_green.measure.signal_safety import note_handler, own_handler

DEFER_S = 0.01
"""A SIGTERM that arrives inside mlflow-green's own code (a meter read, a spool write) is delivered
again this much later, until it arrives outside (see :func:`~mlflow_green.measure.signal_safety.inside_own_code`)."""

_HELD: list[list[Any]] = []
"""The holds of :func:`sigterm_held` in force in this process, each ``[hold, the handler it replaced]`` (which a watch
given back meanwhile changes to the handler it had: :func:`give_back_under_holds`)."""


@contextlib.contextmanager
def sigterm_held(enabled: bool = True, signum: int = signal.SIGTERM, *, at_once: bool = False) -> Iterator[None]:
    """Hold a SIGTERM that arrives inside the block until the block ends, then deliver it as it would
    have been: to the handler in force before (which may raise, e.g. Lightning's, whose broadcast
    fails when another rank is gone), else by default (the process terminates). A second SIGTERM
    inside the block is delivered at once (whoever sends it insists).

    For the end of a measurement (the final read, the totals, ``green/report.json``, the run's end): a
    handler that raises there would cut them short, leaving a run without its report. Main thread
    only (a no-op elsewhere, and where SIGTERM is ignored or set outside Python). ``enabled=False``:
    a no-op — for a block that may wait in a collective for a rank that is gone, which SIGTERM must
    still be able to end. ``signum=signal.SIGINT`` holds a Ctrl-C the same way (Python's handler then
    raises the ``KeyboardInterrupt`` as the block ends). ``at_once=True``: the held signal is handed to a handler of
    ours as if it arrived where the block ends, outside mlflow-green's code — for a block at a hook's top level,
    holding no lock of ours: a :class:`~mlflow_green.training.termination.SigtermWatch` then handles it there instead
    of delivering it again a moment later, when a framework's handler may have taken the signal (Lightning's, after
    ``on_fit_start``).

    Example:
        >>> with sigterm_held():
        ...     pass  # a SIGTERM here would be delivered on leaving the block
    """
    received: list[tuple[int, FrameType | None]] = []
    pid = os.getpid()

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append((signum, frame))
        if len(received) > 1 or os.getpid() != pid:  # insisted, or a forked child (nothing to finish): as if not held
            _give_back(_beyond_holds(entry[1]), signum, frame)  # by the blocks around this one too

    note_handler(hold)
    entry: list[Any] = [hold, None]  # the handler it replaced: put back as it ends (a watch given back meanwhile: its own)
    if enabled and threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            current = signal.getsignal(signum)
            if current is not signal.SIG_IGN and current is not None:
                signal.signal(signum, hold)
                entry[1] = current
                _HELD.append(entry)
    try:
        yield
    finally:
        if entry[1] is not None:
            _HELD[:] = [held for held in _HELD if held is not entry]  # (not there in a forked child)
            previous = entry[1]
            with contextlib.suppress(ValueError, OSError):
                if signal.getsignal(signum) == hold:
                    signal.signal(signum, previous)
            if len(received) == 1:
                got, frame = received[0]  # at_once: to our watch as outside our code (a handler of yours: as it came)
                _deliver(previous, got, None if at_once and own_handler(previous) else frame)


@contextlib.contextmanager
def signals_held(enabled: bool = True, *, at_once: bool = False) -> Iterator[None]:
    """:func:`sigterm_held` for SIGTERM and SIGINT together: a scheduler's stop and a Ctrl-C that arrive
    inside the block are both delivered as it ends (``enabled=False``: a no-op; ``at_once``: see :func:`sigterm_held`).

    Example:
        >>> with signals_held():
        ...     pass
    """
    with sigterm_held(enabled=enabled, at_once=at_once), sigterm_held(enabled=enabled, signum=signal.SIGINT, at_once=at_once):
        yield


def _beyond_holds(handler: Any) -> Any:
    """What ``handler`` replaced, through the holds of blocks around this one: an insisted signal goes past them all."""
    for held, before in reversed(list(_HELD)):  # entered outermost first: the walk goes outwards
        if held is handler:
            handler = before
    return handler


def give_back_under_holds(signum: int, handler: Any, replacement: Any) -> bool:
    """``handler`` (a watch's) gives ``signum`` back to ``replacement`` while blocks hold it (a fit ended inside another
    call's held block): the block that replaced ``handler`` puts ``replacement`` back as it ends, not ``handler``.
    False where ``handler`` is under no hold in force (main thread only)."""
    current = signal.getsignal(signum)
    for _ in range(len(_HELD)):
        entry = next((held for held in _HELD if held[0] is current), None)
        if entry is None:
            return False
        if entry[1] == handler:
            entry[1] = replacement
            return True
        current = entry[1]
    return False


def _give_back(handler: Any, signum: int, frame: FrameType | None) -> None:
    """The signal back to ``handler``, then delivered as it would have been under it."""
    with contextlib.suppress(ValueError, OSError, TypeError):
        signal.signal(signum, handler)
    _deliver(handler, signum, frame)


def _deliver_later(signum: int) -> bool:
    """Send ``signum`` to the main thread again :data:`DEFER_S` from now (it interrupts a blocking call there,
    as the first did); False when no thread can start (the interpreter is shutting down)."""
    again = threading.Timer(DEFER_S, signal.pthread_kill, (threading.main_thread().ident, signum))
    again.daemon = True
    try:
        again.start()
    except RuntimeError:
        return False
    return True


def _deliver(handler: Any, signum: int, frame: FrameType | None) -> None:
    """Do what SIGTERM would have done under ``handler``: call it, or terminate by default."""
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)


# -- forks: a process forked from a measured training gets SIGTERM back as it was -------------------------------------
_TAKEN: list[Any] = []
"""The watches (:class:`~mlflow_green.training.termination.SigtermWatch`) holding SIGTERM in this process, in the
order they took it."""


_UNBLOCK_AFTER_FORK: set[int] = set()
"""The threads forking now in which :func:`_forking` blocked SIGTERM (two threads may fork at once: each
gives back its own)."""


def _forking() -> None:
    """Before a fork while SIGTERM is ours: block it in the forking thread, until the child has SIGTERM back
    as it was. A pool stops a worker it has just forked with SIGTERM (Keras's PyDataset with
    ``use_multiprocessing``); reaching the child while it still has our Python handler, the signal was lost
    (Python clears the signals caught before a child's at-fork handlers) or handled as if in the training,
    and the worker lived on (its pool, joining it, waited forever)."""
    if _TAKEN or _HELD:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            if signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}):
                _UNBLOCK_AFTER_FORK.add(threading.get_ident())


def _unblock(child: bool = False) -> None:
    """Unblock SIGTERM in the forking thread if :func:`_forking` blocked it (one kept pending is delivered
    now). A handler that raises for it here — inside the fork, where the error would be printed and dropped —
    gets it again a moment later, as the main thread's signal."""
    ident = threading.get_ident()  # the forking thread's, in the child too
    blocked = ident in _UNBLOCK_AFTER_FORK
    _UNBLOCK_AFTER_FORK.discard(ident)
    if child:
        _UNBLOCK_AFTER_FORK.clear()  # the other threads forking are not in the child
    if not blocked:
        return
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    except (ValueError, OSError):
        pass
    except BaseException:  # noqa: BLE001 - raised by a handler of the SIGTERM kept pending: delivered again
        _deliver_later(signal.SIGTERM)


def _forked() -> None:
    """In a process forked from a measured training (a data loader's worker), SIGTERM goes back to what it
    was before any watch took it or any hold held it: the child has no measurement to end, and a Python
    handler there can miss a SIGTERM that arrives just before a blocking call (a pool stopping its workers
    would wait forever); a hold would keep the child alive. Then SIGTERM is unblocked (see :func:`_forking`)."""
    try:
        _give_sigterm_back()
    finally:
        _unblock(child=True)


def _give_sigterm_back() -> None:
    ours = [(watch._handle, watch._previous) for watch in _TAKEN] + list(_HELD)
    with contextlib.suppress(ValueError, OSError, TypeError):
        for _ in range(len(ours)):  # each of ours in force gives way to the handler it replaced
            current = signal.getsignal(signal.SIGTERM)
            previous = next((before for handler, before in ours if handler == current), None)
            if previous is None:
                break
            signal.signal(signal.SIGTERM, previous)
    _TAKEN.clear()  # their _previous kept: a handler installed over ours may still call ours
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_forking, after_in_parent=_unblock, after_in_child=_forked)


__all__ = ["DEFER_S", "give_back_under_holds", "signals_held", "sigterm_held"]
