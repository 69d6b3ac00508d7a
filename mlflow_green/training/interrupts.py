"""Ctrl-C (SIGINT) during a measured fit: end the measurement ``KILLED`` at that moment, then interrupt.

Python turns SIGINT into a ``KeyboardInterrupt`` raised wherever the main thread is — inside a step,
a callback, or the framework's own code between them (TensorFlow's input pipeline checks for signals
while it builds an epoch's iterator). Raised there, it leaves the fit where no hook of the callback
sees it: the run would stay ``RUNNING`` (and the active run) until a watch noticed the fit had left,
and end ``FAILED``. While a fit is measured, :class:`SigintWatch` takes SIGINT if its handler is
Python's own (``signal.default_int_handler``) or another watch's (a call measured inside another, or right after a
fit that failed where no hook saw it): it ends the measurement ``KILLED`` first, then hands the signal on — Python's
handler raises the ``KeyboardInterrupt`` as it would have. A handler the user set (a graceful stop that only sets
a flag) is left alone, and so is a SIGINT the process ignores.

Example:
    >>> ended = []
    >>> watch = SigintWatch(lambda: ended.append("KILLED"))
    >>> watch.take(); watch.restore()
"""

from __future__ import annotations

import signal

from mlflow_green.training.termination import SigtermWatch


class SigintWatch(SigtermWatch):
    """Takes SIGINT between :meth:`take` and :meth:`restore`, while its handler is Python's own.

    Args:
        on_term: Called once, in the main thread, when SIGINT arrives (before the
            ``KeyboardInterrupt`` is raised); what it raises is logged, never propagated.
    """

    signum = signal.SIGINT

    def take(self) -> None:
        """Take SIGINT (main thread only) if Python's default handler has it, or another watch's; else leave it as it is.

        Over another watch still taken (a call measured inside another; a fit that failed in Keras's own code, not ended
        yet as the next call begins): a Ctrl-C ends this measurement, then goes on to that watch."""
        try:
            if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
                if not isinstance(getattr(signal.getsignal(signal.SIGINT), "__self__", None), SigintWatch):
                    return
        except (ValueError, OSError):
            return
        super().take()


__all__ = ["SigintWatch"]
