"""How the Hugging Face callback's measurement of a ``train()`` ends.

``FINISHED`` at ``on_train_end``; ``FAILED``, or ``KILLED`` for a ``KeyboardInterrupt`` or ``SystemExit``, when
``train()`` raises — in a training step (the wrapped ``training_step``), outside one (the wrapped ``train``, or the
thread watching a ``train()`` that was not wrapped: :mod:`~mlflow_green.integrations._fit_watch`) — ``KILLED`` at
SIGTERM, ``FAILED`` at exit for a training never seen to end. A training cut short inside a window makes no
collective (in DDP the other ranks may be gone): with ``eval_strategy="steps"`` its end's totals are logged at the
global step reached (:meth:`EndingMixin._number_cut_short`).

Ends run one at a time (``_ENDING``): the watching thread's end and the training thread's next ``train()`` wait for
each other, and a SIGTERM arriving during the watching thread's end waits for it, then terminates as before.

Example::

    callback._train_raised(RuntimeError("disk full"))   # the run ends FAILED now
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from mlflow_green.integrations._hf_trainer import unwatch_training_step
from mlflow_green.training.inspection import ModelProfile
from mlflow_green.training.session import TrainingSession

_ENDING = threading.RLock()
"""Held while a training's measurement ends, and as a ``train()`` begins (an end in another thread finishes first)."""


def status_of(exc: BaseException) -> str:
    """``KILLED`` for an interrupt (Ctrl-C, a SIGTERM handler's ``SystemExit``), else ``FAILED``.

    Example:
        >>> status_of(KeyboardInterrupt()), status_of(SystemExit(1)), status_of(OSError())
        ('KILLED', 'KILLED', 'FAILED')
    """
    return "KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED"


class EndingMixin:
    """The end of the Hugging Face callback's training measurement."""

    session: TrainingSession
    _training: bool
    _owner: Any
    _train_watch: Any
    _trainer: Any
    _end_pending: tuple[ModelProfile | None] | None = None  # on_train_end's profile, the run waiting for train()'s return
    # (a default here: a copy pickled before the attribute existed has none)
    _window: int | None
    _next_window: int | None
    _after_point: bool
    _by_steps: bool
    _closing: bool
    _in_validation: bool
    _samples: int
    _reached_step: int           # the Trainer's global_step at the last step's end
    _logs: dict[str, float]
    _sigterm: Any
    _elsewhere: Callable[[], bool]            # the parts of the callback this one calls (its other mixins)
    _steps_samples: Callable[[], int]
    _finish_eval: Callable[[str], None]

    def _end_previous(self) -> None:
        """As a ``train()`` begins: a previous one still measured ends — ``FINISHED`` where its ``on_train_end`` came
        and its run waits for the ``train()`` around it to return (a subclass's ``train()`` training twice through
        ``super().train()``), else ``FAILED`` (it raised where nothing saw it); one the watching thread is ending is
        waited for."""
        with _ENDING:
            if self._training:
                self._finish("FINISHED" if self._end_pending is not None else "FAILED")

    def _on_step_failure(self, exc: BaseException) -> None:
        self._finish(status_of(exc))

    def _train_raised(self, exc: BaseException) -> None:
        """``train()`` raised outside a step (data loading, an evaluation, another callback): the run ends now."""
        with self._sigterm.ending_elsewhere(), _ENDING:
            if self._training and not self._elsewhere():
                self._finish(status_of(exc))

    def _train_returned(self) -> None:
        """``train()`` returned, every callback's ``on_train_end`` done: the run that waited for it ends now."""
        with self._sigterm.ending_elsewhere(), _ENDING:
            if self._end_pending is not None and not self._elsewhere():
                self._finish("FINISHED")

    def _finish(self, status: str, profile: ModelProfile | None = None) -> None:
        with _ENDING:
            pending, self._end_pending = self._end_pending, None  # the profile on_train_end took, if it waited
            profile = pending[0] if profile is None and pending is not None else profile
            if not self._training:
                return
            self._training, self._owner = False, None
            watch, self._train_watch = self._train_watch, None
            if watch is not None:
                watch.stop()
            if self._window is not None:  # the training ended inside a window: the samples it trained count
                self._number_cut_short()
                self.session.count("train", self._samples or self._steps_samples())
            self._window = self._next_window = None
            self._closing = self._in_validation = False
            self._sigterm.restore()
            self._detach()
            self.session.end_fit(status, logs=self._logs, profile=profile)

    def _number_cut_short(self) -> None:
        """``eval_strategy="steps"``: the window the training ended in is logged at the global step reached — after
        its number where that holds the previous window's point (a step failing right after an evaluation) — so
        that its end's totals are one point there."""
        if self._window is not None and self._by_steps:
            self.session.renumber_epoch(max(self._reached_step, self._window + int(self._after_point)))

    def _detach(self) -> None:
        trainer, self._trainer = self._trainer, None
        unwatch_training_step(trainer)

    def _on_sigterm(self) -> None:
        self._finish("KILLED")
        self._finish_eval("KILLED")

    def _finish_at_exit(self) -> None:
        """A training or evaluation that never ended (an exception outside a step) ends FAILED."""
        if self._training:
            self._finish("FAILED")
        self._finish_eval("FAILED")

    def __getstate__(self) -> dict[str, Any]:  # a copy (pickle, deepcopy) does not take the watch's thread
        return {**self.__dict__, "_train_watch": None}
