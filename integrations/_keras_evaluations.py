"""The evaluations run inside a Keras ``fit``'s epoch, and the training samples counted across them.

Keras's ``fit`` runs its own validation through ``model.evaluate(..., _use_cached_eval_dataset=True)`` once the
epoch's training is done. A callback may run ``model.evaluate`` too — in the middle of an epoch (at a batch's end)
or at its end — with or without the fit's GreenCallback. Two things follow:

- on TensorFlow an epoch's training samples may come from the train step's own count, Keras's loss tracker
  (generators, ``tf.data`` of unknown size, an epoch cut short); every ``evaluate`` resets that tracker as it begins
  and counts its own batches into it. :class:`EpochEvaluations` banks the training samples counted so far as such an
  evaluation begins, and notes the count it leaves, from which training goes on: :meth:`EpochEvaluations.train_seen`
  is the epoch's training samples however many evaluations ran in it;
- an evaluation with the fit's callback in the middle of the epoch's training is the fit's ``validation`` (its energy
  and samples), but training follows it in the epoch: :attr:`EpochEvaluations.mid_training` tells the callback so
  (the epoch's samples are not read as it begins, nor does its end end the epoch's training).

The fit's :class:`~mlflow_green.integrations._keras_guard.CallGuard` wraps the model's ``evaluate``,
``test_on_batch`` and ``train_on_batch`` (which reset the metrics too; the last trains a batch of the callback's, not
the fit's: :func:`steps_kept`) with :meth:`EpochEvaluations.wrap` for the length of the fit. An
``evaluate`` bound before the fit (a callback's ``set_model`` keeping ``model.evaluate``) bypasses the wrapper: with
the fit's callback it is still told from the fit's validation (the guard notes when the fit's own list calls the test
hooks), so its phase and the samples are right; on TensorFlow its reset of the loss tracker is not seen (an input of
unknown size: the epoch's count is off).

Example:
    >>> count = {"seen": 0}
    >>> evaluations = EpochEvaluations(lambda: count["seen"], reads=True)
    >>> def evaluate():
    ...     count["seen"] = 90  # reset, then 90 samples evaluated
    >>> evaluate = evaluations.wrap(evaluate)
    >>> evaluations.epoch_begins()
    >>> count["seen"] = 320  # 10 batches of 32 trained
    >>> evaluate()
    >>> count["seen"] += 288  # 9 more batches
    >>> evaluations.train_seen(count["seen"])
    608
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from mlflow_green.measure.signal_safety import passes_through

logger = logging.getLogger(__name__)


class EpochEvaluations:
    """The ``evaluate`` calls inside a fit's epochs (see the module docstring).

    Args:
        seen: The loss tracker's count now (None or 0 when it has none).
        reads: Whether the count is read at all (TensorFlow; on torch and JAX the batches read are counted instead).
        noted_by: The fit's guard, whose ``in_own_hook`` is true while the fit's own list calls its test hooks (None
            where it does not wrap them: a ``CallbackList`` driven by a loop of the user's own).
    """

    def __init__(self, seen: Callable[[], int | None], *, reads: bool, noted_by: Any = None) -> None:
        self._seen, self._reads, self._noted_by = seen, reads, noted_by
        self.training = False  # from our on_epoch_begin until the callback list's on_epoch_end begins
        self._banked = self._offset = self._evaluating = 0
        self._evaluated = False

    @property
    def in_callback_evaluate(self) -> bool:
        """Inside an evaluation a callback runs (not the fit's own validation: its samples are its own input's) —
        through the wrapper, or one it bypassed (an ``evaluate`` bound before the fit) whose hooks run while the fit's
        own hooks do not (the fit's validation calls its callbacks through the fit's list, whose hooks note it)."""
        return self._evaluating > 0 or (self._noted_by is not None and not self._noted_by.in_own_hook)

    @property
    def mid_training(self) -> bool:
        """An evaluation of a callback's, inside the epoch's training (training follows it in this epoch)."""
        return self.training and self.in_callback_evaluate

    def epoch_begins(self) -> None:
        """An epoch begins (our ``on_epoch_begin``): its training starts, nothing banked. Keras reset the count just
        before its callbacks' ``on_epoch_begin``: what it holds now, an evaluation of a callback listed before ours
        added (read only where one ran since the last epoch began)."""
        self.training = True
        offset = self._read() if self._evaluated else 0
        self._banked, self._offset, self._evaluated = 0, offset, offset > 0

    def training_over(self) -> None:
        """The epoch's callback list begins its ``on_epoch_end``: no more training in this epoch."""
        self.training = False

    def train_seen(self, seen: int | None) -> int | None:
        """The epoch's training samples counted, given the loss tracker's count ``seen`` now."""
        if not self._evaluated:
            return seen
        if self._evaluating:  # inside an evaluation: its own batches are in the tracker
            return self._banked or None
        return (self._banked + max((seen or 0) - self._offset, 0)) or None

    def wrap(self, evaluate: Callable[..., Any]) -> Callable[..., Any]:
        """``evaluate``, counted: a callback's evaluation during the fit (not the fit's own validation; one between two
        epochs is banked into the epoch before, which the next one's start forgets)."""

        @passes_through  # a Ctrl-C inside the evaluate is the training's, not ours: handled at once
        @functools.wraps(evaluate)
        def evaluate_in_fit(*args: Any, **kwargs: Any) -> Any:
            if self._evaluating or kwargs.get("_use_cached_eval_dataset"):
                return evaluate(*args, **kwargs)  # nested, or the fit's own validation (its samples read as it begins)
            self._bank()
            self._evaluating += 1
            try:
                return evaluate(*args, **kwargs)
            finally:
                self._evaluating -= 1
                self._offset = self._read()

        return evaluate_in_fit

    def _bank(self) -> None:
        self._banked += max(self._read() - self._offset, 0)
        self._evaluated = True

    def _read(self) -> int:
        if not self._reads:
            return 0
        try:
            return self._seen() or 0
        except Exception as exc:  # counting never breaks training
            logger.debug("mlflow-green: the loss tracker's count not read: %r", exc)
            return 0


def steps_kept(train_on_batch: Callable[..., Any], guard: Any) -> Callable[..., Any]:
    """``train_on_batch`` called from a callback during a fit (``guard``: the fit's ``CallGuard``): its step, through
    the guarded step function, is not counted among the fit's ``steps``, which tell the epoch's batches."""

    @passes_through
    @functools.wraps(train_on_batch)
    def outside_the_fits_steps(*args: Any, **kwargs: Any) -> Any:
        steps = guard.steps
        try:
            return train_on_batch(*args, **kwargs)
        finally:
            guard.steps = steps

    return outside_the_fits_steps


NO_EVALUATIONS = EpochEvaluations(lambda: None, reads=False)
"""Stands in where a call has none (no fit, or a guard without them): never evaluating."""


def evaluations_in(guard: Any) -> EpochEvaluations:
    """The fit's evaluations as its ``guard`` (a :class:`~mlflow_green.integrations._keras_guard.CallGuard`, or None)
    watches them."""
    return getattr(guard, "evaluations", None) or NO_EVALUATIONS


__all__ = ["NO_EVALUATIONS", "EpochEvaluations", "evaluations_in", "steps_kept"]
