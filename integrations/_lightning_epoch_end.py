"""A reading as a Lightning epoch's training is over: before any callback's ``on_train_epoch_end``.

Lightning's fit loop ends an epoch in its ``on_advance_end``: the epoch's last batch, its hooks (the
module's ``on_train_batch_end`` runs after every callback's) and any validation at the epoch's end are
done; then it calls the callbacks' ``on_train_epoch_end`` in their order, the module's, and the
monitoring callbacks'. :class:`EpochEndReading` wraps that method on the fit's loop instance for the
length of the fit and has the callback's session take a reading as it begins
(:meth:`~mlflow_green.training.session_windows.WindowsMixin.training_ended`): a callback listed before
the GreenCallback that writes a checkpoint at the epoch's end is then ``other``, not training. Where
the loop has no such method (another Lightning version), :meth:`EpochEndReading.install` returns None
and the epoch's end reads the meters itself, as before.

Example:
    >>> class FitLoop:
    ...     def on_advance_end(self): return "ended"
    >>> class Session:
    ...     def training_ended(self): print("reading")
    >>> class Callback:
    ...     session = Session()
    >>> trainer = type("Trainer", (), {"fit_loop": FitLoop()})()
    >>> reading = EpochEndReading.install(trainer, Callback())
    >>> trainer.fit_loop.on_advance_end()
    reading
    'ended'
    >>> reading.remove(); "on_advance_end" in trainer.fit_loop.__dict__
    False
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


class EpochEndReading:
    """The fit loop's ``on_advance_end``, wrapped to take the reading first (a class, not a closure: a trainer
    copied or pickled meanwhile stays picklable)."""

    def __init__(self, fit_loop: Any, callback: Any) -> None:  # noqa: D107 - see install
        self.fit_loop, self.callback = fit_loop, callback
        self.original = fit_loop.on_advance_end

    @classmethod
    def install(cls, trainer: Any, callback: Any) -> EpochEndReading | None:
        """Wrap ``trainer``'s fit loop for ``callback`` (whose ``session`` takes the reading); None where it cannot."""
        fit_loop = getattr(trainer, "fit_loop", None)
        if fit_loop is None or not callable(getattr(type(fit_loop), "on_advance_end", None)):
            return None
        reading = cls(fit_loop, callback)
        fit_loop.on_advance_end = reading
        return reading

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            self.callback.session.training_ended()
        except Exception as exc:  # measurement never breaks training: the epoch's end reads the meters itself
            logger.debug("mlflow-green: no reading as the epoch's training ended: %r", exc)
        return self.original(*args, **kwargs)

    def remove(self) -> None:
        """Give the fit loop its own method back."""
        if self.fit_loop.__dict__.get("on_advance_end") is self:
            del self.fit_loop.__dict__["on_advance_end"]


__all__ = ["EpochEndReading"]
