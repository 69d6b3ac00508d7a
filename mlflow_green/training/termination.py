"""SIGTERM during a measured training: end the measurement ``KILLED`` at that moment, then terminate.

A scheduler (Kubernetes, Slurm, a CI runner) stops a training with SIGTERM. Python's default is to
die at once — no ``finally``, no ``atexit`` — so a run would stay ``RUNNING`` without its totals.
While a training is measured, :class:`SigtermWatch` takes SIGTERM: it first calls ``on_term``
(the callback or ``track()`` stops its meters, logs the totals so far and ends its run ``KILLED``),
then does what the process would have done without it: the previous handler if there was one
(e.g. a framework's own), else the default (the process terminates by the signal). Handlers can
only be set from the main thread: elsewhere the watch does nothing. A SIGTERM the process ignores
stays ignored. One that arrives while mlflow-green's own code runs (a meter read that holds the
meters' lock, which ending the measurement takes again) is delivered again :data:`DEFER_S` later,
until it arrives in the training's own code (at most :data:`MAX_DEFER_S`).

Example:
    >>> ended = []
    >>> watch = SigtermWatch(lambda: ended.append("KILLED"))
    >>> watch.take(); watch.restore()
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from mlflow_green.measure.signal_safety import inside_own_code, note_handler
from mlflow_green.training.signal_holds import (
    _TAKEN,
    DEFER_S,
    _deliver,
    _deliver_later,
    _give_back,
    give_back_under_holds,
    signals_held,
    sigterm_held,
)

logger = logging.getLogger(__name__)

MAX_DEFER_S = 3.0
"""For at most this long in all: then it is handled wherever it arrives."""
ENDING_WAIT_S = 10.0
"""A SIGTERM that arrives while another thread ends the measurement (see :meth:`SigtermWatch.ending_elsewhere`)
waits this long at most for that end (the run's totals, report and status) before passing on: within the grace
period schedulers give before SIGKILL (Kubernetes 30 s, Slurm's KillWait 30 s)."""


class SigtermWatch:
    """Takes SIGTERM between :meth:`take` and :meth:`restore` (see the module docstring).

    Args:
        on_term: Called once, in the main thread, when SIGTERM arrives (before the process
            terminates); what it raises is logged, never propagated.
    """

    signum: int = signal.SIGTERM
    """The signal watched (:class:`~mlflow_green.training.interrupts.SigintWatch`: SIGINT, Ctrl-C)."""

    def __init__(self, on_term: Callable[[], None]) -> None:
        self.on_term = on_term
        self._previous: Any = None
        self._deferred_s = 0.0
        self.pending = False  # a signal put off (it arrived in our code), to be delivered again a moment later
        self._pid = 0  # the process that took SIGTERM (a forked child inherits the handler, not the watch)
        self._disarmed = False  # restored off the main thread: the handler stays and passes SIGTERM on
        self._settled = threading.Event()  # cleared while another thread ends the measurement
        self._settled.set()

    def __getstate__(self) -> dict[str, Any]:  # a callback holding one is copied and pickled (an Event is not)
        return {key: value for key, value in self.__dict__.items() if key != "_settled"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._settled = threading.Event()
        self._settled.set()

    @property
    def watching(self) -> bool:
        """True while SIGTERM is ours."""
        return self._previous is not None and not self._disarmed

    def take(self) -> None:
        """Take SIGTERM (main thread only; a no-op elsewhere, when SIGTERM is ignored, or if taken already)."""
        if threading.current_thread() is not threading.main_thread():
            return
        if self._previous is not None and self._disarmed:  # this watch, given back under another handler: again
            with contextlib.suppress(ValueError, OSError):
                if signal.getsignal(self.signum) == self._handle:  # its handler in force again: re-armed
                    self._disarmed, self._pid, self._deferred_s, self.pending = False, os.getpid(), 0.0, False
                    return
            self._previous, self._disarmed = None, False  # else taken afresh, over what is in force now
            if self in _TAKEN:
                _TAKEN.remove(self)
        if self._previous is not None:
            return
        try:
            previous = _unwrapped(signal.getsignal(self.signum))
            if previous is signal.SIG_IGN or previous is None:  # ignored, or set outside Python: left alone
                return
            signal.signal(self.signum, self._handle)
            self._disarmed = False
            self._previous = previous
            self._deferred_s, self.pending = 0.0, False
            self._pid = os.getpid()
            if self.signum == signal.SIGTERM:  # a forked child gets SIGTERM back from these (SIGINT: from the handler)
                _TAKEN.append(self)
        except (ValueError, OSError):  # not the main interpreter, or no signals here
            self._previous = None

    def restore(self) -> None:
        """Give SIGTERM back to the handler it had before :meth:`take` (if it is still ours).

        Inside blocks holding the signal (:func:`signals_held`: a fit ended as the next call begins), the block
        that replaced this watch's handler puts that handler back as it ends. Off the main thread (a
        measurement ended by a watching thread), where handlers cannot be set, and under a handler set over
        this one (which may put it back): the watch is disarmed instead — a SIGTERM that reaches it goes
        straight on to that handler, and the next :meth:`take` puts it back.
        """
        if self._previous is not None and threading.current_thread() is not threading.main_thread():
            self._disarmed = True  # still among the taken watches: a fork gives SIGTERM back as from any
            return
        if self._previous is None:
            return
        try:
            ours = signal.getsignal(self.signum) == self._handle
        except (ValueError, OSError):
            ours = True  # no signals here: nothing to give back
        if not ours and not give_back_under_holds(self.signum, self._handle, self._previous):  # a handler set over
            self._disarmed = True  # ours, which may put ours back as it ends: disarmed as off the main thread
            return
        if self in _TAKEN:
            _TAKEN.remove(self)
        previous, self._previous = self._previous, None
        if ours:  # (else the hold over ours puts ``previous`` back as its block ends)
            with contextlib.suppress(ValueError, OSError):
                signal.signal(self.signum, _unwrapped(previous))

    @contextlib.contextmanager
    def ending_elsewhere(self) -> Iterator[None]:
        """The measurement is ended inside this block, possibly by a thread other than the main one (a watch
        that saw the training end): a SIGTERM meanwhile waits for the block's end (at most :data:`ENDING_WAIT_S`)
        before it passes on — terminating at once would leave the run ``RUNNING`` without its totals.

        Example:
            >>> watch = SigtermWatch(lambda: None)
            >>> with watch.ending_elsewhere():
            ...     pass  # end the measurement here
        """
        if threading.current_thread() is threading.main_thread():  # where the handler runs: nothing to wait for
            yield
            return
        self._settled.clear()
        try:
            yield
        finally:
            self._settled.set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # A process forked from the training (a data loader's worker, which its pool stops with SIGTERM): as
        # without us, it has no measurement to end. os.getpid(), not the PID kept up to date at fork: a SIGTERM
        # can arrive while the child runs the at-fork handlers registered before that one (logging's).
        if os.getpid() == self._pid and self._disarmed and signal.getsignal(signum) != self._handle:
            _deliver(self._previous if self._previous is not None else signal.SIG_DFL, signum, frame)  # reached
            return  # through a handler set over ours, which calls it: passed on, that handler kept
        if os.getpid() != self._pid or self._disarmed:  # a forked child; or this watch was given back
            previous, self._disarmed = self._previous, False
            if os.getpid() == self._pid:
                self._previous = None
                if self in _TAKEN:
                    _TAKEN.remove(self)
                self._settled.wait(ENDING_WAIT_S)  # given back by a thread ending the measurement: let it finish
            _give_back(previous if previous is not None else signal.SIG_DFL, signum, frame)
            return
        if self._deferred_s < MAX_DEFER_S and inside_own_code(frame):  # it may hold a lock that ending takes
            self._deferred_s += DEFER_S
            if _deliver_later(signum):
                self.pending = True
                return  # else no thread can start (the interpreter is shutting down): handled now
        self.pending = False
        previous = self._previous = _unwrapped(self._previous)  # a watch under ours given back meanwhile: what it had
        self.restore()
        try:
            self.on_term()
        except Exception as exc:  # the process terminates anyway
            logger.warning("mlflow-green: could not end the measurement at %s: %s", signal.Signals(signum).name, exc)
        self._settled.wait(ENDING_WAIT_S)  # another thread was ending it already: on_term left it to that thread
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.raise_signal(signum)  # terminate as the process would have without us


def _unwrapped(handler: Any) -> Any:
    """``handler``, or — the handler of a watch given back (disarmed) — the one that watch had, the watch done with."""
    earlier = getattr(handler, "__self__", None)
    if isinstance(earlier, SigtermWatch) and earlier._disarmed and earlier._previous is not None:
        handler, earlier._previous, earlier._disarmed = earlier._previous, None, False
        if earlier in _TAKEN:
            _TAKEN.remove(earlier)
    return handler


note_handler(SigtermWatch._handle)  # it gives SIGTERM back before it calls on: an error through it is the signal's
inside_own_code(None)  # where our code lives, found now rather than inside a signal handler


__all__ = ["DEFER_S", "ENDING_WAIT_S", "MAX_DEFER_S", "SigtermWatch", "signals_held", "sigterm_held"]
