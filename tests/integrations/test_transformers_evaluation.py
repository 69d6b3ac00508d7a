"""Hugging Face ``trainer.evaluate()`` and ``trainer.predict()`` outside ``train()``: measured and logged as
Lightning's ``validate`` / ``test`` / ``predict`` — tiny BERT built from a config, real sqlite store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

pytest.importorskip("transformers")

from green_invariants import assert_green_invariants  # noqa: E402
from hf_models import TokenDataset, accuracy, bert_classifier, training_args  # noqa: E402
from transformers import Trainer, TrainerCallback  # noqa: E402

import mlflow_green  # noqa: E402
from mlflow_green.integrations.transformers import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402

EVAL, TEST = 48, 40


def _trainer(tmp_path: Path, cb: GreenCallback | None, **args: object) -> Trainer:
    return Trainer(model=bert_classifier(), args=training_args(tmp_path / "out", **args), compute_metrics=accuracy,
                   train_dataset=TokenDataset(64, seed=1), eval_dataset=TokenDataset(EVAL, seed=2),
                   callbacks=[cb] if cb is not None else None)


def _report(run_id: str, tmp_path: Path) -> dict:
    return json.loads(Path(MlflowClient().download_artifacts(run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())


@pytest.mark.parametrize(("call", "kind", "samples"), [
    ("evaluate", "validate", EVAL), ("evaluate_test", "test", TEST), ("predict", "predict", TEST),
])
def test_an_evaluation_alone_makes_a_complete_run(call: str, kind: str, samples: int, mlflow_experiment: str,
                                                  tmp_path: Path) -> None:
    cb = GreenCallback()
    trainer = _trainer(tmp_path, cb)
    if call == "evaluate":
        trainer.evaluate()
    elif call == "evaluate_test":
        trainer.evaluate(TokenDataset(TEST, seed=3), metric_key_prefix="test")
    else:
        trainer.predict(TokenDataset(TEST, seed=3))
    [run] = MlflowClient().search_runs([mlflow_experiment])
    assert run.info.run_id == cb.session.run_id and run.info.status == "FINISHED"
    metrics, tags = run.data.metrics, run.data.tags
    assert metrics[schema.phase_energy_key(kind)] > 0
    assert metrics[schema.phase_energy_per_sample_key(kind)] == pytest.approx(
        metrics[schema.phase_energy_key(kind)] * 3.6e6 / samples, rel=1e-6)
    for tag in (schema.TAG_METERS, schema.TAG_ESTIMATED, schema.TAG_VERSION, schema.TAG_SCOPE, schema.TAG_REGION):
        assert tags.get(tag), tag
    report = _report(run.info.run_id, tmp_path)
    assert report["framework"] == "transformers" and report["status"] == "FINISHED"
    assert report["samples"] == {kind: samples} and report["phases"][kind]["energy_j"] > 0
    assert mlflow.active_run() is None


def test_evaluations_after_training_go_into_its_run_and_inside_train_stay_validation(
        mlflow_experiment: str, tmp_path: Path) -> None:
    cb = GreenCallback(live_metrics=False)
    trainer = _trainer(tmp_path, cb, num_train_epochs=1)
    trainer.train()
    train_run = cb.session.run_id
    trainer.evaluate()
    trainer.predict(TokenDataset(TEST, seed=3))
    [run] = MlflowClient().search_runs([mlflow_experiment])
    assert run.info.run_id == train_run and run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert {schema.phase_energy_key("validate"), schema.phase_energy_key("predict"), schema.ENERGY_VALIDATION_KWH} <= set(metrics)
    report = _report(train_run, tmp_path)
    assert report["samples"] == {"train": 64, "validation": EVAL, "validate": EVAL, "predict": TEST}
    assert_green_invariants(train_run)  # the fit's phases still add up to its total


def test_a_failing_evaluation_ends_its_own_run_failed_and_raises(mlflow_experiment: str, tmp_path: Path) -> None:
    cb = GreenCallback()
    trainer = _trainer(tmp_path, cb)

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("metric crashed (simulated)")

    trainer.compute_metrics = broken
    with pytest.raises(RuntimeError, match="simulated"):
        trainer.evaluate()
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FAILED" and run.data.metrics[schema.phase_energy_key("validate")] > 0
    assert mlflow.active_run() is None
    trainer.compute_metrics = accuracy
    trainer.evaluate()  # the next evaluation is measured normally
    assert not cb.session.eval_in_progress


def test_an_active_run_and_report_to_mlflow_are_used(mlflow_experiment: str, tmp_path: Path) -> None:
    cb = GreenCallback()
    with mlflow.start_run() as mine:
        _trainer(tmp_path, cb).evaluate()
        assert mlflow.active_run().info.run_id == mine.info.run_id  # left open
    assert cb.session.run_id == mine.info.run_id
    assert schema.phase_energy_key("validate") in MlflowClient().get_run(mine.info.run_id).data.metrics

    other = GreenCallback()
    _trainer(tmp_path, other, report_to="mlflow").evaluate()  # transformers' MLflowCallback starts a run at its log
    hf_run = MlflowClient().get_run(other.session.run_id)
    assert {"eval_accuracy", schema.phase_energy_key("validate")} <= set(hf_run.data.metrics)
    while mlflow.active_run() is not None:
        mlflow.end_run()


def test_autolog_measures_an_evaluation_of_a_trainer_built_after_it(mlflow_experiment: str, tmp_path: Path) -> None:
    mlflow_green.autolog()
    try:
        trainer = _trainer(tmp_path, None)
        trainer.predict(TokenDataset(TEST, seed=3))
    finally:
        mlflow_green.autolog(disable=True)
    [run] = MlflowClient().search_runs([mlflow_experiment])
    assert run.info.status == "FINISHED" and run.data.metrics[schema.phase_energy_key("predict")] > 0


class EvaluatesAtTrainEnd(TrainerCallback):
    """A callback listed after ours that evaluates the trained model once more (on a held-out set) as training ends."""

    def __init__(self) -> None:
        self.trainer: Trainer | None = None
        self.seconds = 0.0

    def on_train_end(self, args: object, state: object, control: object, **kwargs: object) -> None:
        start_s = time.perf_counter()
        self.trainer.evaluate(TokenDataset(TEST, seed=3), metric_key_prefix="final")
        time.sleep(0.3)  # and writes a summary
        self.seconds = time.perf_counter() - start_s


def test_an_evaluation_in_the_on_train_end_of_a_callback_after_ours_is_billed_to_the_training(
        mlflow_experiment: str, tmp_path: Path) -> None:
    """Inside train(), before its run ends: no run of its own, not the training's validation (nor its quality), and
    its time in the training's run (its phases still adding up)."""
    cb, after = GreenCallback(live_metrics=False), EvaluatesAtTrainEnd()
    trainer = Trainer(model=bert_classifier(), args=training_args(tmp_path / "out", num_train_epochs=1),
                      compute_metrics=accuracy, train_dataset=TokenDataset(64, seed=1),
                      eval_dataset=TokenDataset(EVAL, seed=2), callbacks=[cb, after])
    after.trainer = trainer
    trainer.train()
    [run] = MlflowClient().search_runs([mlflow_experiment])
    assert run.info.run_id == cb.session.run_id and run.info.status == "FINISHED"
    in_training = [log["eval_accuracy"] for log in trainer.state.log_history if "eval_accuracy" in log]
    assert run.data.metrics[schema.QUALITY] == pytest.approx(in_training[-1])
    assert run.data.metrics[schema.DURATION_S] >= after.seconds >= 0.3
    report = _report(run.info.run_id, tmp_path)
    assert report["samples"] == {"train": 64, "validation": EVAL}
    assert_green_invariants(run.info.run_id)
