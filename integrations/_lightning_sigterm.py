"""SIGTERM during a Lightning fit where Lightning's own handler is not in place: the fit ends ``KILLED``.

Lightning takes SIGTERM only for the middle of a call: its handler (``trainer.received_sigterm``, then its
``SIGTERMException`` at the end of the batch, which the callback's ``on_exception`` sees) is registered after the
callbacks' and the module's ``on_fit_start`` and the checkpoint's restore, and given back before the ``on_fit_end``
hooks. A fit is measured from the callback's ``setup`` to its ``teardown``: a SIGTERM before Lightning's handler (in
the module's ``setup`` or ``configure_optimizers``, another callback's ``on_fit_start``) or after it (another
callback's ``on_fit_end``) met Python's default, and the process died leaving no run, or its run ``RUNNING`` without
its figures. :class:`SigtermBesideLightning` takes SIGTERM from the callback's ``setup`` until its ``teardown``: where
it is the process's handler, the fit ends ``KILLED`` with what was measured until then and the process terminates
as it would have (:class:`~mlflow_green.training.termination.SigtermWatch`). Lightning's handler, registered over it,
calls it after its own (it keeps the handler it found); called that way it only passes the signal on as the handler
it replaced would have been passed it — so inside Lightning's stretch SIGTERM is Lightning's, as without the
callback — and Lightning puts it back as the process's handler when it gives SIGTERM back (after a fit that failed
in Lightning's stretch, the handler before the fit instead). It takes SIGTERM only where SIGTERM would terminate the
process: a handler of the user's that notes the signal and returns (a graceful stop) is left alone, and the fit
goes on measured, as it would go on.

Example:
    >>> import signal
    >>> watch = SigtermBesideLightning(lambda: None)
    >>> watch.take()
    >>> signal.getsignal(signal.SIGTERM) == watch._handle
    True
    >>> watch.restore()
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from mlflow_green.measure.signal_safety import note_handler
from mlflow_green.record.timeouts import RunTimeouts
from mlflow_green.training.termination import SigtermWatch

logger = logging.getLogger(__name__)


class SigtermBesideLightning(SigtermWatch):
    """A :class:`~mlflow_green.training.termination.SigtermWatch` that steps aside while a handler registered over
    it (Lightning's) calls it (see the module docstring), and takes SIGTERM only where it would terminate the process."""

    def take(self) -> None:
        """As :meth:`SigtermWatch.take`, where SIGTERM would terminate the process now: by default, or through
        mlflow-green's own watches (a ``track()`` block's) handing it on to the default. A handler of the user's (a
        graceful stop that notes the signal and returns) is left alone: the fit goes on, measured, as it would."""
        if not _terminates(signal.getsignal(self.signum)):
            return
        super().take()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signal.getsignal(self.signum) != self._handle:  # called by the handler set over ours: passed on, as the
            previous = self._previous  # one it replaced would have been (Lightning's chains only a callable one)
            if callable(previous):
                previous(signum, frame)
            return
        super()._handle(signum, frame)

    def restore(self) -> None:
        """As :meth:`SigtermWatch.restore`; while a handler set over this one is in force (Lightning's, in the middle
        of a call that failed), this one is disarmed instead: that handler, or Lightning's putting it back as the
        process's handler, passes SIGTERM on to the handler it replaced."""
        if (self._previous is not None and threading.current_thread() is threading.main_thread()
                and signal.getsignal(self.signum) != self._handle):
            self._disarmed = True
            return
        super().restore()

    def hand_back_through(self, connector: object) -> None:
        """Where Lightning's signal connector (``trainer._signal_connector``) will put this watch back as the process's
        handler when it gives SIGTERM back (it holds SIGTERM now: a fit failing in its stretch), it puts back the
        handler this one replaced instead: after the fit, SIGTERM is as it was before it."""
        originals = getattr(connector, "_original_handlers", None)
        if self._previous is not None and isinstance(originals, dict) and originals.get(self.signum) == self._handle:
            originals[self.signum] = self._previous


def _finalize(loggers: list[Any]) -> None:
    for each in loggers:
        try:
            each.finalize("failed")
        except Exception as exc:  # the process terminates anyway
            logger.warning("mlflow-green: could not finalize %s at SIGTERM: %r", type(each).__name__, exc)


def _terminates(handler: object) -> bool:
    """True when SIGTERM under ``handler`` terminates the process: the default, or watches handing it on to it."""
    for _ in range(16):  # watches over watches (a track() block's, a fit's inside it)
        watch = getattr(handler, "__self__", None)
        if not isinstance(watch, SigtermWatch):
            break
        handler = watch._previous
    return handler == signal.SIG_DFL


class SigtermHooksMixin:
    """The Lightning callback's SIGTERM watch: taken at a fit's ``setup``, given back at its end."""

    _sigterm: SigtermBesideLightning | None
    _term_call: tuple[Any, Any] | None
    session: Any  # the callback's TrainingSession

    def _take_sigterm(self, trainer: Any, pl_module: Any) -> None:
        """SIGTERM ours from the fit's setup to its teardown, where Lightning's handler is not in place (``_lightning_sigterm``)."""
        self._release_sigterm()
        self._term_call = (trainer, pl_module)
        self._sigterm = SigtermBesideLightning(self._terminated)
        self._sigterm.take()

    def _terminated(self) -> None:
        """SIGTERM outside Lightning's stretch of the fit: the fit ends ``KILLED`` now (the process terminates next),
        and the Trainer's loggers are finalized ``"failed"``, as Lightning does for a SIGTERM in its stretch (an
        ``MLFlowLogger``'s run was left ``RUNNING``: nothing else ends it once the process is gone)."""
        trainer, pl_module = self._term_call or (None, None)
        try:
            self.on_exception(trainer, pl_module, SystemExit(128 + signal.SIGTERM))
        finally:  # within the run's end timeout (a server gone, checkpoints to upload): the process terminates next
            loggers = list(getattr(trainer, "loggers", None) or ())
            if loggers:
                finalizing = threading.Thread(target=_finalize, args=(loggers,), name="mlflow-green-finalize", daemon=True)
                finalizing.start()
                finalizing.join((self.session.output.timeouts or RunTimeouts.resolve()).end_s)

    def _release_sigterm(self) -> None:
        watch, call, self._sigterm, self._term_call = self._sigterm, self._term_call, None, None
        if watch is not None:
            watch.hand_back_through(getattr(call[0] if call else None, "_signal_connector", None))
            watch.restore()


note_handler(SigtermBesideLightning._handle)

__all__ = ["SigtermBesideLightning", "SigtermHooksMixin"]
