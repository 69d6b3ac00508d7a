"""GreenCallback for Hugging Face's Trainer: tiny BERT and GPT-2 built from configs (no download), real sqlite stores."""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

pytest.importorskip("transformers")

from hf_models import SEQ_LEN, TokenDataset, accuracy, bert_classifier, gpt2_lm, training_args  # noqa: E402
from transformers import Trainer, TrainerCallback  # noqa: E402

from mlflow_green.errors import ConfigError  # noqa: E402
from mlflow_green.integrations.transformers import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

TRAIN, EVAL = 128, 64


def _steps(run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in MlflowClient().get_metric_history(run_id, key))


def _value_at(run_id: str, key: str, step: int) -> float:
    (value,) = [m.value for m in MlflowClient().get_metric_history(run_id, key) if m.step == step]
    return value


def _report(run_id: str, tmp_path: Path) -> dict:
    return json.loads(Path(MlflowClient().download_artifacts(run_id, schema.REPORT_ARTIFACT, str(tmp_path / run_id))).read_text())


def _bert_trainer(tmp_path: Path, cb: GreenCallback | None, **args: object) -> Trainer:
    return Trainer(
        model=bert_classifier(), args=training_args(tmp_path / "out", **args), compute_metrics=accuracy,
        train_dataset=TokenDataset(TRAIN, seed=1), eval_dataset=TokenDataset(EVAL, seed=2),
        callbacks=[cb] if cb is not None else None,
    )


def test_bert_epochs_are_steps_with_phases_projection_quality_and_model(mlflow_experiment: str, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    cb = GreenCallback()
    trainer = _bert_trainer(tmp_path, cb)
    trainer.train()
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FINISHED" and mlflow.active_run() is None
    metrics, tags = run.data.metrics, run.data.tags
    for key in (
        schema.ENERGY_KWH, schema.POWER_W, schema.EMISSIONS_KG, schema.ENERGY_PER_SAMPLE_J, schema.ENERGY_TRAIN_KWH,
        schema.ENERGY_VALIDATION_KWH, schema.ENERGY_DATA_KWH, schema.PROJECTED_ENERGY_KWH, schema.ACCURACY_PER_KWH,
        schema.FLOP_PER_J, schema.MODEL_PARAMS, schema.MODEL_FLOPS_PER_SAMPLE,
    ):
        assert key in metrics, key
    assert _steps(run.info.run_id, schema.EPOCH_ENERGY_KWH) == [0, 1]
    eval_accuracy = trainer.state.log_history[-2]["eval_accuracy"]
    assert tags[schema.TAG_QUALITY_METRIC] == "eval_accuracy"
    assert metrics[schema.ACCURACY_PER_KWH] == pytest.approx(eval_accuracy / metrics[schema.ENERGY_KWH], rel=1e-6)
    assert metrics[schema.ENERGY_PER_SAMPLE_J] == pytest.approx(metrics[schema.ENERGY_KWH] * 3.6e6 / (2 * TRAIN), rel=1e-6)
    assert metrics[schema.MODEL_PARAMS] == sum(p.numel() for p in trainer.model.parameters())
    assert metrics[schema.MODEL_FLOPS_PER_SAMPLE] > 2 * 2 * SEQ_LEN * 32 * 32  # at least the attention projections
    report = json.loads(Path(MlflowClient().download_artifacts(run.info.run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert report["framework"] == "transformers"
    assert report["samples"] == {"train": 2 * TRAIN, "validation": 2 * EVAL}
    assert [e["epoch"] for e in report["epochs"]] == [0, 1] and all(e["phases_j"]["validation"] > 0 for e in report["epochs"])
    out = capsys.readouterr().out  # one readable line per epoch next to the Trainer's own logs
    assert "mlflow-green · epoch 1: " in out and "mlflow-green · epoch 2: " in out
    assert "e-0" not in out.split("mlflow-green · epoch 2: ")[1].splitlines()[0]


def test_report_to_mlflow_reuses_the_trainers_own_run(mlflow_experiment: str, tmp_path: Path) -> None:
    cb = GreenCallback()
    _bert_trainer(tmp_path, cb, report_to="mlflow").train()
    [run] = MlflowClient().search_runs([mlflow_experiment])
    assert run.info.run_id == cb.session.run_id and run.info.status == "FINISHED"
    assert {"eval_accuracy", "loss", schema.ENERGY_KWH, schema.ACCURACY_PER_KWH} <= set(run.data.metrics)


def test_an_active_run_is_used_and_left_open(mlflow_experiment: str, tmp_path: Path) -> None:
    cb = GreenCallback(live_metrics=False)
    with mlflow.start_run() as run:
        _bert_trainer(tmp_path, cb, num_train_epochs=1).train()
        assert mlflow.active_run().info.run_id == run.info.run_id
    assert cb.session.run_id == run.info.run_id


def test_gpt2_eval_steps_are_the_steps_and_shared_weights_show(mlflow_experiment: str, tmp_path: Path) -> None:
    cb = GreenCallback(quality_metric="eval_loss")
    trainer = Trainer(
        model=gpt2_lm(), callbacks=[cb], train_dataset=TokenDataset(96, seed=3, task="lm"),
        eval_dataset=TokenDataset(32, seed=4, task="lm"),
        args=training_args(tmp_path / "out", eval_strategy="steps", eval_steps=4, max_steps=10, logging_steps=4,
                           per_device_train_batch_size=8, logging_strategy="steps"),
    )
    trainer.train()
    run = MlflowClient().get_run(cb.session.run_id)
    assert _steps(run.info.run_id, schema.EPOCH_ENERGY_KWH) == [4, 8, 10]  # the Trainer's global steps
    metrics = run.data.metrics
    # GPT-2's output layer is its token embedding: counted twice as used, once as stored
    assert metrics[schema.MODEL_PARAMS] - metrics[schema.MODEL_PARAMS_UNIQUE] == 64 * 32
    assert schema.FLOP_PER_J in metrics
    projected = MlflowClient().get_metric_history(run.info.run_id, schema.PROJECTED_ENERGY_KWH)
    first = min(projected, key=lambda m: m.step)
    # three windows planned, one done: what is spent, and six more steps at the first window's rate per step
    # (not the energy so far, nor a share of the final total, which depends on the machine's load meanwhile)
    spent_kwh = _value_at(run.info.run_id, schema.ENERGY_KWH, 4)
    window_kwh = _value_at(run.info.run_id, schema.EPOCH_ENERGY_KWH, 4)
    assert first.step == 4 and first.value == pytest.approx(spent_kwh + window_kwh * 6 / 4, rel=1e-9), (first, spent_kwh, window_kwh)
    report = json.loads(Path(MlflowClient().download_artifacts(run.info.run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert report["samples"]["train"] == 10 * 8


def test_an_energy_budget_stops_training_cleanly(mlflow_experiment: str, tmp_path: Path) -> None:
    cb = GreenCallback(max_energy_kwh=1e-9)
    trainer = _bert_trainer(tmp_path, cb, num_train_epochs=5)
    trainer.train()
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FINISHED"
    assert "energy budget" in run.data.tags[schema.TAG_BUDGET_STOP]
    assert trainer.state.epoch < 5


def test_an_energy_budget_spent_mid_epoch_stops_inside_the_epoch(mlflow_experiment: str, tmp_path: Path) -> None:
    """1 kW for 0.4 s a step, 8 steps an epoch: the 1.5 kJ budget is spent mid-epoch; the check every 2 s
    stops training there, not at the epoch's end."""

    class SlowSteps(TrainerCallback):
        def on_step_end(self, *args: object, **kwargs: object) -> None:
            time.sleep(0.4)

    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 1000.0})], max_energy_kwh=1500 / 3.6e6)
    trainer = _bert_trainer(tmp_path, cb, num_train_epochs=3)
    trainer.add_callback(SlowSteps())
    trainer.train()
    assert trainer.state.global_step < TRAIN // 16, "stopped inside the first epoch"
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FINISHED" and run.data.tags[schema.TAG_BUDGET_STOP].startswith("energy budget")


def test_a_failing_step_ends_the_run_failed_with_the_energy_so_far(mlflow_experiment: str, tmp_path: Path) -> None:
    cb = GreenCallback()
    model = bert_classifier()
    calls = {"trained": 0}
    forward = model.forward

    def failing_forward(*args: object, **kwargs: object) -> object:
        if model.training and calls["trained"] == TRAIN // 16 + 2:  # the third step of the second epoch
            raise RuntimeError("out of memory (simulated)")
        calls["trained"] += model.training
        return forward(*args, **kwargs)

    model.forward = failing_forward
    trainer = Trainer(model=model, args=training_args(tmp_path / "out", remove_unused_columns=False),
                      train_dataset=TokenDataset(TRAIN, seed=1),
                      eval_dataset=TokenDataset(EVAL, seed=2), callbacks=[cb])
    with pytest.raises(RuntimeError, match="simulated"):
        trainer.train()
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FAILED"
    assert run.data.metrics[schema.ENERGY_KWH] > 0 and mlflow.active_run() is None
    # the samples of every step that trained, the cut-short epoch's too; not the failing step's batch
    samples = (TRAIN // 16 + 2) * 16
    assert calls["trained"] == TRAIN // 16 + 2 and _report(run.info.run_id, tmp_path)["samples"]["train"] == samples
    metrics = run.data.metrics
    assert metrics[schema.ENERGY_PER_SAMPLE_J] == pytest.approx(metrics[schema.ENERGY_KWH] * 3.6e6 / samples, rel=1e-6)


def test_bad_options_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match="pue"):
        GreenCallback(pue=-1)
    with pytest.raises(ConfigError, match="quality_metric"):
        GreenCallback(quality_metric="")
