"""mlflow_green.autolog() and Hugging Face's Trainer (and its subclasses)."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

pytest.importorskip("transformers")

from autolog_fixtures import autolog_off, runs_of, steps  # noqa: E402
from hf_models import TokenDataset, accuracy, bert_classifier, training_args  # noqa: E402
from transformers import Trainer, TrainerCallback  # noqa: E402

import mlflow_green  # noqa: E402
from mlflow_green.integrations.transformers import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402

_off = pytest.fixture(autouse=True)(autolog_off)


class CustomTrainer(Trainer):
    """A subclass with its own train(), as libraries built on the Trainer have (TRL's, setfit's)."""

    def train(self, *args: object, **kwargs: object) -> object:
        return super().train(*args, **kwargs)


def _greens(trainer: Trainer) -> list:
    return [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, GreenCallback)]


def _trainer(tmp_path: Path, cls: type = Trainer, **kwargs: object) -> Trainer:
    return cls(model=bert_classifier(), args=training_args(tmp_path / "out", num_train_epochs=1),
               train_dataset=TokenDataset(64, seed=1), eval_dataset=TokenDataset(32, seed=2),
               compute_metrics=accuracy, **kwargs)


def test_train_is_measured_with_no_callback_in_the_code_and_twice_in_one_run(mlflow_experiment: str,
                                                                             tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)  # built before autolog(): the callback joins at train()
    mlflow_green.autolog(live_metrics=False)
    trainer.train()
    [green] = _greens(trainer)
    assert green.live_metrics is False
    [run] = runs_of(mlflow_experiment)
    assert run.info.status == "FINISHED" and run.data.tags[schema.TAG_QUALITY_METRIC] == "eval_accuracy"
    assert steps(run.info.run_id, schema.EPOCH_ENERGY_KWH) == [0]


def test_subclasses_and_a_users_own_callback(mlflow_experiment: str, tmp_path: Path) -> None:
    mlflow_green.autolog()
    seq = _trainer(tmp_path, CustomTrainer)
    seq.train()
    assert len(_greens(seq)) == 1
    mine = GreenCallback(run_name="mine")
    own = _trainer(tmp_path, callbacks=[mine])
    own.train()
    assert _greens(own) == [mine]
    first, second = runs_of(mlflow_experiment)
    assert schema.ENERGY_KWH in first.data.metrics and second.info.run_name == "mine"


def test_disable(mlflow_experiment: str, tmp_path: Path) -> None:
    mlflow_green.autolog()
    mlflow_green.autolog(disable=True)
    trainer = _trainer(tmp_path)
    trainer.train()
    assert _greens(trainer) == [] and runs_of(mlflow_experiment) == []


class _Raises(TrainerCallback):
    """A callback of the user's that raises at the first epoch's end, or in ``on_train_end``."""

    def __init__(self, where: str, exception: type[BaseException]) -> None:
        self.where, self.exception = where, exception

    def on_epoch_end(self, args: object, state: object, control: object, **kwargs: object) -> None:
        if self.where == "on_epoch_end":
            raise self.exception("a callback of the user's (simulated)")

    def on_train_end(self, args: object, state: object, control: object, **kwargs: object) -> None:
        if self.where == "on_train_end":
            raise self.exception("a callback of the user's (simulated)")


@pytest.mark.parametrize("where, exception, status", [
    ("on_epoch_end", OSError, "FAILED"),
    ("on_epoch_end", KeyboardInterrupt, "KILLED"),
    ("on_train_end", OSError, "FAILED"),
])
@pytest.mark.parametrize("made", ["before autolog", "after, train() through the class"])
def test_a_trainer_made_before_autolog_has_its_run_ended_as_train_raises(
        mlflow_experiment: str, tmp_path: Path, where: str, exception: type[BaseException], status: str, made: str) -> None:
    """Its callback joins only as train() runs (or its train() goes around the instance's wrapper); autolog's wrapper
    of the training loop still sees the exception as it leaves train(): the run is over in the user's ``except``
    block, not up to two seconds later (and a Ctrl-C is KILLED, not FAILED), and a new run may start there."""
    if made != "before autolog":
        mlflow_green.autolog()
    trainer = _trainer(tmp_path, callbacks=[_Raises(where, exception)])
    mlflow_green.autolog()
    start_s = time.monotonic()
    try:
        Trainer.train(trainer) if made != "before autolog" else trainer.train()
    except exception:
        wall_s = time.monotonic() - start_s
        [green] = _greens(trainer)
        run = MlflowClient().get_run(green.session.run_id)
        assert run.info.status == status
        assert mlflow.active_run() is None
        with mlflow.start_run(run_name="the user's next"):
            pass
    else:
        pytest.fail("train() did not raise")
    assert 0 < run.data.metrics[schema.DURATION_S] <= wall_s
