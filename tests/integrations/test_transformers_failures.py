"""A Hugging Face ``train()`` that raises outside a training step — another callback, the evaluation, the data
loading — ends the callback's run at once (``FAILED``, or ``KILLED`` for Ctrl-C), its meters stopped then; the
user's own run is never ended. Tiny BERT built from a config, real sqlite stores."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

pytest.importorskip("transformers")

from green_invariants import assert_green_invariants  # noqa: E402
from hf_models import TokenDataset, accuracy, bert_classifier, training_args  # noqa: E402
from transformers import Trainer, TrainerCallback  # noqa: E402
from transformers.data.data_collator import default_data_collator  # noqa: E402

from mlflow_green.integrations._fit_watch import LOOK_INTERVAL_S  # noqa: E402
from mlflow_green.integrations.transformers import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

FIFTY_W = {"cpu:0": 45.0, "ram:0": 5.0}
"""50 W in all: with a RAM device of its own, the meter gets no RAM estimate added (20 W × this process's share of
the RAM, which grows with the frameworks a suite's worker has loaded: 1 % to 5 % more energy)."""


TRAIN, EVAL, BATCH = 64, 32, 16
STEPS_PER_EPOCH = TRAIN // BATCH


class RaisesAtFirstEpochEnd(TrainerCallback):
    """A callback of the user's (a checkpoint writer whose disk is full) listed before or after ours."""

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        raise OSError("No space left on device (simulated)")


def _failing_metrics(eval_pred: Any) -> dict[str, float]:
    raise KeyboardInterrupt  # Ctrl-C during the evaluation inside train()


class FailingCollator:
    """Data loading that fails at the second epoch's second batch (outside any training step)."""

    def __init__(self) -> None:
        self.batches = 0

    def __call__(self, features: list[Any]) -> dict[str, Any]:
        self.batches += 1
        if self.batches == STEPS_PER_EPOCH + 2:
            raise ValueError("corrupt record (simulated)")
        return default_data_collator(features)


CASES = {  # where it raises -> (the exception, the run's status)
    "a callback before ours": (OSError, "FAILED"),
    "a callback after ours": (OSError, "FAILED"),
    "the evaluation's metrics (Ctrl-C)": (KeyboardInterrupt, "KILLED"),
    "the data loading": (ValueError, "FAILED"),
}


def _trainer(tmp_path: Path, case: str, cb: GreenCallback, *, added_later: bool) -> Trainer:
    listed: list[Any] = [cb]
    if case == "a callback before ours":
        listed.insert(0, RaisesAtFirstEpochEnd())
    elif case == "a callback after ours":
        listed.append(RaisesAtFirstEpochEnd())
    trainer = Trainer(
        model=bert_classifier(), args=training_args(tmp_path / "out", per_device_train_batch_size=BATCH),
        train_dataset=TokenDataset(TRAIN, seed=1), eval_dataset=TokenDataset(EVAL, seed=2),
        compute_metrics=_failing_metrics if "metrics" in case else accuracy,
        data_collator=FailingCollator() if case == "the data loading" else None,
        callbacks=[c for c in listed if not (added_later and c is cb)],
    )
    if added_later:  # the Trainer was made without it: its train() is not wrapped, a watch sees the exception
        trainer.add_callback(cb)
    return trainer


def _ended(run_id: str, within_s: float) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        run = MlflowClient().get_run(run_id)
        if run.info.status != "RUNNING" or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


@pytest.mark.parametrize("added_later", [False, True], ids=["Trainer(callbacks=...)", "trainer.add_callback"])
@pytest.mark.parametrize("case", list(CASES))
def test_train_raising_outside_a_step_ends_the_run_then_with_the_energy_until_then(
        mlflow_experiment: str, tmp_path: Path, case: str, added_later: bool) -> None:
    exception, status = CASES[case]
    cb = GreenCallback(meters=[FakeMeter(FIFTY_W)])
    trainer = _trainer(tmp_path, case, cb, added_later=added_later)
    start_s = time.monotonic()
    with pytest.raises(exception):
        trainer.train()
    wall_s = time.monotonic() - start_s
    # the wrapped train() ends the run before the exception reaches the caller; the watch within two looks
    run = _ended(cb.session.run_id, 2 * LOOK_INTERVAL_S + 1.0 if added_later else 0.0)
    # the watch sees train() gone, not what it raised: FAILED (the wrapper sees a KeyboardInterrupt: KILLED)
    assert run.info.status == ("FAILED" if added_later else status)
    assert mlflow.active_run() is None
    duration_s = run.data.metrics[schema.DURATION_S]
    assert 0 < duration_s <= wall_s + (2 * LOOK_INTERVAL_S + 0.5 if added_later else 0.0)
    assert run.data.metrics[schema.ENERGY_KWH] == pytest.approx(50.0 * duration_s / 3.6e6, rel=0.01)
    assert_green_invariants(run.info.run_id, finished=False)
    time.sleep(0.5)  # nothing bills the time after: the totals stay as they were
    assert MlflowClient().get_run(run.info.run_id).data.metrics[schema.DURATION_S] == duration_s


def test_a_users_run_is_left_running_and_the_next_train_gets_a_run_of_its_own(mlflow_experiment: str,
                                                                                tmp_path: Path) -> None:
    cb = GreenCallback(meters=[FakeMeter(FIFTY_W)])
    trainer = _trainer(tmp_path, "a callback after ours", cb, added_later=False)
    with mlflow.start_run() as mine:
        with pytest.raises(OSError):
            trainer.train()
        assert mlflow.active_run().info.run_id == mine.info.run_id  # still the user's, still open
        assert MlflowClient().get_run(mine.info.run_id).info.status == "RUNNING"
        assert cb.session.run_id == mine.info.run_id
    failed = Trainer(model=bert_classifier(), args=training_args(tmp_path / "out2", per_device_train_batch_size=BATCH),
                     train_dataset=TokenDataset(TRAIN, seed=1), eval_dataset=TokenDataset(EVAL, seed=2),
                     compute_metrics=accuracy, callbacks=[cb, RaisesAtFirstEpochEnd()])
    with pytest.raises(OSError):
        failed.train()
    first = _ended(cb.session.run_id, 0.0)
    assert first.info.status == "FAILED" and first.info.run_id != mine.info.run_id
    first_kwh = first.data.metrics[schema.ENERGY_KWH]
    failed.callback_handler.callbacks = [c for c in failed.callback_handler.callbacks if not isinstance(c, RaisesAtFirstEpochEnd)]
    failed.train()  # the same callback, trained again: a run of its own, the failed one left as it was
    second = MlflowClient().get_run(cb.session.run_id)
    assert second.info.run_id != first.info.run_id and second.info.status == "FINISHED"
    assert MlflowClient().get_run(first.info.run_id).data.metrics[schema.ENERGY_KWH] == first_kwh
    assert_green_invariants(second.info.run_id)


class ExitsInAStep(Trainer):
    """A SIGTERM handler of the user's raising ``SystemExit`` inside a training step."""

    def compute_loss(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        if model.training and self.state.global_step == 2:
            raise SystemExit(143)
        return super().compute_loss(model, inputs, *args, **kwargs)


def test_an_exit_inside_a_step_ends_the_run_killed_as_one_outside_it(mlflow_experiment: str, tmp_path: Path) -> None:
    cb = GreenCallback(meters=[FakeMeter(FIFTY_W)])
    trainer = ExitsInAStep(model=bert_classifier(), args=training_args(tmp_path / "out", per_device_train_batch_size=BATCH),
                           train_dataset=TokenDataset(TRAIN, seed=1), eval_dataset=TokenDataset(EVAL, seed=2),
                           compute_metrics=accuracy, callbacks=[cb])
    with pytest.raises(SystemExit):
        trainer.train()
    assert _ended(cb.session.run_id, 0.0).info.status == "KILLED" and mlflow.active_run() is None


class ExitsInAPredictionStep(TrainerCallback):
    """A callback calling ``sys.exit`` (or a SIGTERM handler of the user's raising ``SystemExit``) during an evaluation."""

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        raise SystemExit(143)


@pytest.mark.parametrize("method", ["evaluate", "predict"])
def test_an_exit_inside_an_evaluation_alone_ends_its_run_killed(mlflow_experiment: str, tmp_path: Path, method: str) -> None:
    """As inside ``train()`` (it ended ``FAILED``: only ``KeyboardInterrupt`` was taken for an interruption)."""
    cb = GreenCallback(meters=[FakeMeter(FIFTY_W)])
    trainer = Trainer(model=bert_classifier(), args=training_args(tmp_path / "out"), eval_dataset=TokenDataset(EVAL, seed=2),
                      compute_metrics=accuracy, callbacks=[ExitsInAPredictionStep(), cb])
    with pytest.raises(SystemExit):
        trainer.evaluate() if method == "evaluate" else trainer.predict(TokenDataset(EVAL, seed=3))
    [run] = MlflowClient().search_runs([mlflow_experiment])
    assert run.info.status == "KILLED" and mlflow.active_run() is None


def test_the_next_train_right_after_an_unseen_failure_ends_it_before_its_watch_looks(mlflow_experiment: str,
                                                                                   tmp_path: Path) -> None:
    """A callback added with add_callback: its first train() is watched; a train() again at once (a retry loop) ends
    the failed one FAILED itself, and the watch never touches the new training."""
    cb = GreenCallback(meters=[FakeMeter(FIFTY_W)])
    trainer = _trainer(tmp_path, "a callback after ours", cb, added_later=True)
    with pytest.raises(OSError):
        trainer.train()
    failed = cb.session.run_id
    trainer.callback_handler.callbacks = [c for c in trainer.callback_handler.callbacks if not isinstance(c, RaisesAtFirstEpochEnd)]
    trainer.train()  # wrapped since the first: the retry is seen whole
    time.sleep(2 * LOOK_INTERVAL_S + 0.5)  # the first train()'s watch would have looked by now
    client = MlflowClient()
    assert client.get_run(failed).info.status == "FAILED"
    retried = client.get_run(cb.session.run_id)
    assert retried.info.run_id != failed and retried.info.status == "FINISHED"
    assert_green_invariants(retried.info.run_id)


class ExportsAtTrainEnd(TrainerCallback):
    """A callback listed after ours whose ``on_train_end`` exports the model (a while), or fails to."""

    def __init__(self, fails: bool) -> None:
        self.fails, self.done_ms = fails, 0

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        time.sleep(0.3)
        self.done_ms = int(time.time() * 1000)
        if self.fails:
            raise RuntimeError("export failed (simulated)")


@pytest.mark.parametrize("fails", [True, False], ids=["raises", "returns"])
def test_a_callback_after_ours_ends_the_training_inside_its_run(mlflow_experiment: str, tmp_path: Path, fails: bool) -> None:
    """The run ends as ``train()`` returns or raises, the callbacks listed after ours done: one raising in its
    ``on_train_end`` ends it ``FAILED`` (it was ``FINISHED``: ours had ended it in its own ``on_train_end``), and the
    time their end takes is measured in it."""
    cb = GreenCallback(meters=[FakeMeter(FIFTY_W)])
    trainer = Trainer(model=bert_classifier(), args=training_args(tmp_path / "out", per_device_train_batch_size=BATCH),
                      train_dataset=TokenDataset(TRAIN, seed=1), eval_dataset=TokenDataset(EVAL, seed=2),
                      compute_metrics=accuracy, callbacks=[cb, export := ExportsAtTrainEnd(fails)])
    start_s = time.monotonic()
    if fails:
        with pytest.raises(RuntimeError, match="export failed"):
            trainer.train()
    else:
        trainer.train()
    wall_s = time.monotonic() - start_s
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == ("FAILED" if fails else "FINISHED") and mlflow.active_run() is None
    assert run.info.end_time >= export.done_ms and run.data.metrics[schema.DURATION_S] <= wall_s  # the export inside
    assert_green_invariants(run.info.run_id)


class TwoStages(Trainer):
    """A subclass whose ``train()`` trains twice through ``super().train()`` (a warm-up stage, then the rest)."""

    def train(self, *args: Any, **kwargs: Any) -> Any:
        super().train(*args, **kwargs)
        return super().train(*args, **kwargs)


def test_a_subclass_training_twice_in_one_train_call_ends_each_training_finished(mlflow_experiment: str,
                                                                                  tmp_path: Path) -> None:
    """The first training's run waits for the ``train()`` around it, which goes on to a second training: that
    training's start ends the first ``FINISHED`` (its ``on_train_end`` came), not ``FAILED`` as a training that
    raised unseen."""
    cb = GreenCallback(meters=[FakeMeter(FIFTY_W)])
    trainer = TwoStages(model=bert_classifier(), args=training_args(tmp_path / "out", per_device_train_batch_size=BATCH),
                        train_dataset=TokenDataset(TRAIN, seed=1), eval_dataset=TokenDataset(EVAL, seed=2),
                        compute_metrics=accuracy, callbacks=[cb])
    trainer.train()
    runs = MlflowClient().search_runs([mlflow_experiment], order_by=["attributes.start_time ASC"])
    assert [run.info.status for run in runs] == ["FINISHED", "FINISHED"] and mlflow.active_run() is None
    for run in runs:
        assert_green_invariants(run.info.run_id)
