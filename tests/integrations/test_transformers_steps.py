"""One point per step in a Hugging Face training's run, however the windows end: a training cut short between two
evaluations (``eval_strategy="steps"``), a stop asked for at an evaluation, a second pass over an ``IterableDataset``
under ``max_steps``. Tiny BERT built from a config, real sqlite stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

pytest.importorskip("transformers")

import torch  # noqa: E402
from green_invariants import assert_green_invariants  # noqa: E402
from hf_models import TokenDataset, accuracy, bert_classifier, training_args  # noqa: E402
from transformers import Trainer, TrainerCallback  # noqa: E402

from mlflow_green.integrations.transformers import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

TRAIN, EVAL, BATCH = 64, 32, 16  # 4 optimizer steps per epoch


def _green() -> GreenCallback:
    return GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])


def _steps(run_id: str, key: str = schema.ENERGY_KWH) -> list[int]:
    return sorted(m.step for m in MlflowClient().get_metric_history(run_id, key))


class FailsAtStep(Trainer):
    """A training step that raises (out of memory, a bad batch) once ``global_step`` steps are done."""

    fail_at = 5

    def compute_loss(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        if model.training and self.state.global_step == self.fail_at:
            raise RuntimeError("out of memory (simulated)")
        return super().compute_loss(model, inputs, *args, **kwargs)


@pytest.mark.parametrize("fail_at", [5, 4], ids=["a step after the evaluation's", "the step right after it"])
def test_a_training_cut_short_between_two_evaluations_ends_with_one_point_at_the_step_reached(
        mlflow_experiment: str, tmp_path: Path, fail_at: int) -> None:
    cb = _green()
    trainer = FailsAtStep(model=bert_classifier(), args=training_args(tmp_path / "out", eval_strategy="steps", eval_steps=4,
                                                                      per_device_train_batch_size=BATCH),
                          train_dataset=TokenDataset(TRAIN, seed=1), eval_dataset=TokenDataset(EVAL, seed=2),
                          compute_metrics=accuracy, callbacks=[cb])
    trainer.fail_at = fail_at
    with pytest.raises(RuntimeError, match="simulated"):
        trainer.train()
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FAILED"
    # the evaluation's point at 4; the end's totals once after it: at the step reached (5), or the step in progress
    assert _steps(run.info.run_id) == [4, 5]
    assert_green_invariants(run.info.run_id)
    trained = fail_at * BATCH  # every step that trained, not the failing one's batch
    report = json.loads(Path(MlflowClient().download_artifacts(run.info.run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert report["samples"]["train"] == trained
    metrics = run.data.metrics
    assert metrics[schema.ENERGY_PER_SAMPLE_J] == pytest.approx(metrics[schema.ENERGY_KWH] * 3.6e6 / trained, rel=1e-6)


class StopsAtEvaluation(TrainerCallback):
    """What ``EarlyStoppingCallback`` does when patience runs out, listed after the GreenCallback."""

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= 6:
            control.should_training_stop = True


def test_a_stop_asked_for_at_an_evaluation_after_ours_leaves_one_point_at_its_step(mlflow_experiment: str,
                                                                                    tmp_path: Path) -> None:
    cb = _green()
    trainer = Trainer(model=bert_classifier(), args=training_args(tmp_path / "out", num_train_epochs=6, eval_strategy="steps",
                                                                  eval_steps=3, per_device_train_batch_size=BATCH),
                      train_dataset=TokenDataset(TRAIN, seed=1), eval_dataset=TokenDataset(EVAL, seed=2),
                      compute_metrics=accuracy, callbacks=[cb, StopsAtEvaluation()])
    trainer.train()
    assert trainer.state.global_step == 6
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FINISHED"
    assert _steps(run.info.run_id) == [3, 6] and _steps(run.info.run_id, schema.PROJECTED_ENERGY_KWH) == [3, 6]
    hist = assert_green_invariants(run.info.run_id)
    assert hist[schema.ENERGY_KWH][-1].value == run.data.metrics[schema.ENERGY_KWH]  # the end's totals at step 6


class Stream(torch.utils.data.IterableDataset):
    """A stream of the 64 training samples (4 batches a pass), no ``__len__``."""

    def __iter__(self) -> Any:
        samples = TokenDataset(TRAIN, seed=1)
        return (samples[i] for i in range(len(samples)))


@pytest.mark.parametrize("eval_strategy", ["no", "epoch"])
def test_an_iterable_dataset_read_twice_under_max_steps_has_a_point_per_pass(mlflow_experiment: str, tmp_path: Path,
                                                                           eval_strategy: str) -> None:
    cb = _green()
    trainer = Trainer(model=bert_classifier(), args=training_args(tmp_path / "out", max_steps=7, eval_strategy=eval_strategy,
                                                                  per_device_train_batch_size=BATCH),
                      train_dataset=Stream(), eval_dataset=TokenDataset(EVAL, seed=2), compute_metrics=accuracy,
                      callbacks=[cb])
    trainer.train()
    assert trainer.state.epoch < 2  # the Trainer counts epochs against max_steps: the second pass began at 0.57
    run = MlflowClient().get_run(cb.session.run_id)
    assert _steps(run.info.run_id) == [0, 1]  # each pass over the data a window of its own
    assert_green_invariants(run.info.run_id)
    assert run.data.metrics[schema.ENERGY_PER_SAMPLE_J] == pytest.approx(
        run.data.metrics[schema.ENERGY_KWH] * 3.6e6 / (7 * BATCH), rel=1e-6)
