"""The Hugging Face callback outside ``train()``: ``trainer.evaluate()`` and ``trainer.predict()``.

A part of :class:`mlflow_green.integrations.transformers.GreenCallback`. The Trainer announces
neither evaluation's start, so the callback wraps its Trainer's ``evaluate`` / ``predict``
(:func:`~mlflow_green.integrations._hf_trainer.watch_evaluations`) as soon as it knows the
Trainer (``on_init_end``, ``on_train_begin``). Each evaluation is measured like Lightning's
``validate`` / ``test`` / ``predict``: ``green/energy_{kind}_kwh`` and joules per sample into the
last training's run, else the active run (``report_to="mlflow"``: transformers' own), else a
complete run of its own with the ``green.*`` tags and ``green/report.json``, ended ``FAILED`` /
``KILLED`` when the evaluation raises.
"""

from __future__ import annotations

from typing import Any

from mlflow_green.integrations._hf_threads import CallOwner, frame_of
from mlflow_green.integrations._hf_trainer import dataset_length, watch_evaluations
from mlflow_green.integrations._torch_distributed import bind_device, distributed_context
from mlflow_green.training.session import TrainingSession
from mlflow_green.training.termination import SigtermWatch


class EvaluationsMixin:
    """Measuring the evaluations of the callback's Trainer outside ``train()``."""

    session: TrainingSession
    _training: bool
    _trainer_for_eval: Any       # the Trainer whose evaluate() / predict() this callback measures
    _eval_samples: int | None    # samples of the evaluation in progress (counted on the world's process zero)
    _eval_steps: int             # its prediction steps on this rank (when the dataset has no length)
    _sigterm: SigtermWatch       # SIGTERM ends the training or evaluation in progress KILLED
    _owner: CallOwner | None     # the thread (and call) of the training or evaluation it measures

    def _watch(self, trainer: Any) -> None:
        if trainer is None:
            return
        self._trainer_for_eval = trainer
        watch_evaluations(trainer, self, busy=lambda: self._training, elsewhere=self._elsewhere, on_begin=self._begin_eval,
                          on_end=self._end_eval)

    def _elsewhere(self) -> bool:
        """True while it measures a training or evaluation running in another thread."""
        return self._owner is not None and self._owner.elsewhere()

    def _setup_ranks(self, args: Any, state: Any, *, is_zero: bool | None = None) -> None:
        """Each rank bills its own processes and devices; the device's queue is synchronised at window ends."""
        bind_device(self.session.template, lambda: args.device)
        self.session.dist = distributed_context(
            world_size=int(args.world_size or 1), tracker=self.session.template,
            is_logging_rank=bool(state.is_world_process_zero if is_zero is None else is_zero),
        )

    def _begin_eval(self, kind: str) -> None:
        trainer = self._trainer_for_eval
        self._setup_ranks(trainer.args, trainer.state, is_zero=trainer.is_world_process_zero())
        self._eval_samples, self._eval_steps = None, 0
        self._owner = CallOwner.here(frame_of("measured"))
        self.session.begin_eval(kind)
        self._sigterm.take()

    def _end_eval(self, kind: str, status: str) -> None:
        self._sigterm.restore()
        self._owner = None
        if not self.session.eval_in_progress:
            return
        samples = self._eval_samples
        if samples is None:  # no dataset length: this rank's prediction steps × batch size
            args = getattr(self._trainer_for_eval, "args", None)
            samples = self._eval_steps * int(getattr(args, "per_device_eval_batch_size", 0) or 0)
        self.session.end_eval(kind, samples=samples, status=status)

    def _finish_eval(self, status: str) -> None:
        """An evaluation never reported back (the process is ending): its run ends with ``status``."""
        if self.session.eval_in_progress:
            self.session.end_eval(self.session.evals.kind or "validate", samples=self._eval_samples, status=status)

    def _count_eval(self, state: Any, dataloader: Any) -> None:
        """``on_evaluate`` / ``on_predict`` of an evaluation outside ``train()`` (once per dataset)."""
        n = rank_zero_count(state, dataloader)
        if n is not None:
            self._eval_samples = (self._eval_samples or 0) + n


def rank_zero_count(state: Any, dataloader: Any) -> int | None:
    """An evaluation's samples: its dataset's length (all ranks) from the world's process zero, 0 elsewhere.

    The session sums the counts of the ranks, and every rank's dataloader has the whole dataset.
    """
    n = dataset_length(dataloader)
    return n if n is None or state.is_world_process_zero else 0
