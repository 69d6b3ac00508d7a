"""One Hugging Face GreenCallback given to two Trainers whose calls run at once in two threads.

Before: two trainings mixed into one run (two points per step, the first run ended FAILED), an
evaluation lost when a training started beside it ("end('validate') called without a matching
begin"), an evaluation beside a training unmeasured without a word, and of two evaluations the
later one measured. Now the call that started first is measured whole; the other goes
unmeasured, with a warning, its Trainer's events kept away from the measurement in progress.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

pytest.importorskip("transformers")

from green_invariants import assert_green_invariants  # noqa: E402
from hf_models import TokenDataset, bert_classifier, training_args  # noqa: E402
from threaded_fits import PausesOnce, fits_at_once, warnings_while  # noqa: E402
from transformers import Trainer, TrainerCallback  # noqa: E402

from mlflow_green.integrations.transformers import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

TRAIN, EVAL = 64, 48


class PauseOnce(PausesOnce, TrainerCallback):
    """Holds the first call after its first training step (or prediction step) until the other call has run."""

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        self.pause()

    def on_prediction_step(self, *args: Any, **kwargs: Any) -> None:
        self.pause()


def _trainer(tmp_path: Path, name: str, cb: GreenCallback, *extra: TrainerCallback) -> Trainer:
    return Trainer(model=bert_classifier(), args=training_args(tmp_path / name, num_train_epochs=1, eval_strategy="no"),
                   train_dataset=TokenDataset(TRAIN, seed=1), eval_dataset=TokenDataset(EVAL, seed=2), callbacks=[cb, *extra])


def _call(trainer: Trainer, what: str) -> Any:
    return {"train": trainer.train, "evaluate": trainer.evaluate}[what]


@pytest.mark.parametrize(("first", "second"), [("train", "train"), ("train", "evaluate"), ("evaluate", "train"),
                                               ("evaluate", "evaluate")])
def test_the_call_that_started_first_is_measured_and_the_other_stands_aside(
        first: str, second: str, mlflow_experiment: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])

    def run_first(in_call: threading.Event, go_on: threading.Event) -> None:
        _call(_trainer(tmp_path, "first", cb, PauseOnce(in_call, go_on)), first)()

    second_trainer = _trainer(tmp_path, "second", cb)
    warnings = warnings_while(caplog, lambda: fits_at_once(run_first, _call(second_trainer, second)))
    assert any(f"measuring a Trainer's call in another thread; this {second} (thread MainThread) goes unmeasured" in w
               for w in warnings), warnings
    assert cb in second_trainer.callback_handler.callbacks  # back in its Trainer for the calls to come
    [run] = MlflowClient().search_runs([mlflow_experiment])
    assert run.info.status == "FINISHED" and run.info.run_id == cb.session.run_id
    assert mlflow.active_run() is None
    if first == "train":
        assert_green_invariants(run.info.run_id)
        assert schema.ENERGY_VALIDATE_KWH not in run.data.metrics  # the other thread's evaluation is not in it
    else:
        assert schema.ENERGY_KWH not in run.data.metrics  # no training in the evaluation's run
        [point] = MlflowClient().get_metric_history(run.info.run_id, schema.ENERGY_VALIDATE_KWH)
        per_sample_j = run.data.metrics[schema.phase_energy_per_sample_key("validate")]
        assert per_sample_j == pytest.approx(point.value * 3.6e6 / EVAL)  # the first evaluation's samples


class RaiseOnce(TrainerCallback):
    """A training that fails at its first step's end (outside the training step)."""

    def __init__(self) -> None:
        self.raised = False

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        if not self.raised:
            self.raised = True
            raise RuntimeError("the second training fails")


def test_a_training_standing_aside_that_raises_leaves_the_callback_in_its_trainer_for_its_next_calls(
        mlflow_experiment: str, tmp_path: Path) -> None:
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    second_trainer = _trainer(tmp_path, "second", cb, RaiseOnce())

    def run_first(in_call: threading.Event, go_on: threading.Event) -> None:
        _trainer(tmp_path, "first", cb, PauseOnce(in_call, go_on)).train()

    with pytest.raises(RuntimeError, match="the second training fails"):
        fits_at_once(run_first, second_trainer.train)
    assert cb in second_trainer.callback_handler.callbacks
    second_trainer.evaluate()  # alone now (HF leaves is_in_train set after a train() that raised): measured
    assert schema.ENERGY_VALIDATE_KWH in MlflowClient().get_run(cb.session.run_id).data.metrics
