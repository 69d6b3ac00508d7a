"""The Lightning callback's ``trainer.test`` and ``trainer.predict`` hooks (``validate`` is with the fit's validation).

Each call alone is measured as itself (``green/energy_test_kwh``, ``green/energy_predict_kwh``) into the run of
the fit before it, or a run of its own; its samples are the batches its steps finished.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlflow_green.integrations._torch_batches import batch_size
from mlflow_green.training.session import TrainingSession


class EvaluationHooksMixin:
    """``on_test_*`` and ``on_predict_*`` of :class:`~mlflow_green.integrations._lightning_impl.GreenCallbackMixin`."""

    session: TrainingSession
    _eval_samples: int
    _eval_pulls: Any  # BatchHooksMixin's: a step reading a dataloader_iter has its pulled batches counted
    _settled_evaluation: Callable[[], int]  # BatchHooksMixin's

    def _begin_eval(self, trainer: Any, kind: str) -> None:
        raise NotImplementedError

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._begin_eval(trainer, "test")

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._eval_pulls is None:  # else a step reading a dataloader_iter: its pulled batches counted
            self._eval_samples += batch_size(batch)

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.end_eval("test", samples=self._settled_evaluation())

    on_predict_batch_end = on_test_batch_end  # the samples of each batch its steps finished

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._begin_eval(trainer, "predict")

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.end_eval("predict", samples=self._settled_evaluation())


__all__ = ["EvaluationHooksMixin"]
