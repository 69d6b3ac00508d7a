"""Hugging Face ``trainer.train(resume_from_checkpoint=...)``: the checkpoint carries the energy totals
(``trainer_state.json``), continued in the same run or started at zero in a new run tagged
``green.resumed_from`` — as the Lightning callback's ``state_dict`` does. Tiny BERT from a config."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

pytest.importorskip("transformers")

from green_invariants import assert_green_invariants  # noqa: E402
from hf_models import TokenDataset, accuracy, bert_classifier, training_args  # noqa: E402
from transformers import Trainer  # noqa: E402

import mlflow_green  # noqa: E402
from mlflow_green.integrations.transformers import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402

TRAIN, BATCH = 64, 16  # 4 optimizer steps per epoch


def _trainer(out: Path, cb: GreenCallback | None, epochs: int, **args: object) -> Trainer:
    return Trainer(
        model=bert_classifier(), compute_metrics=accuracy, callbacks=[cb] if cb is not None else None,
        train_dataset=TokenDataset(TRAIN, seed=1), eval_dataset=TokenDataset(32, seed=2),
        args=training_args(out, num_train_epochs=epochs, save_strategy="epoch", per_device_train_batch_size=BATCH,
                           **args),
    )


def _checkpoint_state(checkpoint: Path) -> dict:
    """What the Trainer saved of our callback in the checkpoint."""
    saved = json.loads((checkpoint / "trainer_state.json").read_text())["stateful_callbacks"]["GreenCallback"]
    return saved["attributes"]["green_checkpoint"]


def _steps(run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in MlflowClient().get_metric_history(run_id, key))


@pytest.mark.parametrize("restore_callback", [False, True], ids=["state-file", "restore-callback-states"])
def test_resume_into_the_same_run_continues_the_totals(restore_callback: bool, mlflow_experiment: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    first = GreenCallback(region="FR", live_metrics=False)
    _trainer(out, first, epochs=2, report_to="mlflow").train()
    run_id = first.session.run_id
    checkpoint = out / "checkpoint-8"
    saved = _checkpoint_state(checkpoint)
    assert saved["run_id"] == run_id and saved["samples"]["train"] == 2 * TRAIN

    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)  # transformers' MLflowCallback resumes that run
    second = GreenCallback(region="FR", live_metrics=False)
    trainer = _trainer(out, second, epochs=3, report_to="mlflow", restore_callback_states_from_checkpoint=restore_callback)
    trainer.train(resume_from_checkpoint=str(checkpoint))
    [green] = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, GreenCallback)]
    if restore_callback:  # transformers rebuilt the callback from the checkpoint: same options, same totals
        assert green is not second and green.session.config.carbon.region == "FRA"
    assert green.session.run_id == run_id
    run = MlflowClient().get_run(run_id)
    total_j = saved["total"]["energy_j"] + green.session.fit_total.energy_j
    assert run.data.metrics[schema.ENERGY_KWH] == pytest.approx(total_j / 3.6e6, rel=1e-9)
    assert _steps(run_id, schema.EPOCH_ENERGY_KWH) == [0, 1, 2]
    assert schema.TAG_RESUMED_FROM not in run.data.tags
    report = json.loads(Path(MlflowClient().download_artifacts(run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert report["samples"]["train"] == 3 * TRAIN
    while mlflow.active_run() is not None:
        mlflow.end_run()


def test_resume_into_a_new_run_starts_at_zero_and_names_the_earlier_run(mlflow_experiment: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    mlflow_green.autolog(live_metrics=False)  # a callback added at train(), after the Trainer's state was built
    try:
        trainer1 = _trainer(out, None, epochs=2)
        trainer1.train()  # the checkpoints are written (no KeyError on the late callback's state)
    finally:
        mlflow_green.autolog(disable=True)
    [first] = [cb for cb in trainer1.callback_handler.callbacks if isinstance(cb, GreenCallback)]
    assert _checkpoint_state(out / "checkpoint-4")["run_id"] == first.session.run_id

    second = GreenCallback(live_metrics=False)
    _trainer(out, second, epochs=3).train(resume_from_checkpoint=str(out / "checkpoint-8"))
    assert second.session.run_id != first.session.run_id
    run = MlflowClient().get_run(second.session.run_id)
    assert run.data.tags[schema.TAG_RESUMED_FROM] == first.session.run_id
    assert run.data.metrics[schema.ENERGY_KWH] * 3.6e6 == pytest.approx(second.session.fit_total.energy_j, rel=1e-9)
    assert _steps(run.info.run_id, schema.EPOCH_ENERGY_KWH) == [2]
    report = json.loads(Path(MlflowClient().download_artifacts(run.info.run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert report["samples"]["train"] == TRAIN  # only the resumed epoch
    assert_green_invariants(run.info.run_id)
    assert MlflowClient().get_run(first.session.run_id).data.metrics[schema.ENERGY_KWH] > 0  # the earlier run untouched


def test_a_checkpoint_resumed_at_its_last_epoch_says_it_trained_no_epoch(mlflow_experiment: str, tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    with caplog.at_level("WARNING", logger="mlflow_green"):
        _trainer(out, GreenCallback(live_metrics=False), epochs=1).train()
        trained = [r for r in caplog.records if "finished without an epoch ending" in r.getMessage()]
        assert trained == []  # a train() that trained: no such warning
        again = GreenCallback(live_metrics=False)
        _trainer(out, again, epochs=1).train(resume_from_checkpoint=str(out / "checkpoint-4"))  # nothing left
    said = [r.getMessage() for r in caplog.records if "finished without an epoch ending" in r.getMessage()]
    assert len(said) == 1, said
    run = MlflowClient().get_run(again.session.run_id)
    assert run.info.status == "FINISHED"
    assert _steps(run.info.run_id, schema.ENERGY_KWH) == [0]
    assert_green_invariants(run.info.run_id, MlflowClient())
