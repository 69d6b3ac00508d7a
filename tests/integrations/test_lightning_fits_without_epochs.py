"""Lightning fits that train no epoch — a checkpoint resumed at ``max_epochs``, ``limit_train_batches=0`` —
get a finished run of one point and a warning that says so; a fit that trains says nothing of the kind."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from mlflow import MlflowClient

pytest.importorskip("lightning")

import lightning  # noqa: E402
from green_invariants import assert_green_invariants  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

NO_EPOCH = "finished without an epoch ending"


def _green() -> Any:
    return GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})])


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if NO_EPOCH in r.getMessage()]


def _one_finished_point(green: Any) -> None:
    client = MlflowClient()
    run = client.get_run(green.session.run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, schema.ENERGY_KWH)] == [0]
    assert_green_invariants(run.info.run_id, client)


def test_a_checkpoint_resumed_at_max_epochs_says_it_trained_no_epoch(mlflow_experiment: str, tmp_path: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    train, val = loaders()
    kwargs = {**quiet_trainer_kwargs(), "max_epochs": 1, "limit_train_batches": 3, "limit_val_batches": 1}
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    with caplog.at_level(logging.WARNING, logger="mlflow_green"):
        lightning.Trainer(callbacks=[_green(), saver], **{**kwargs, "enable_checkpointing": True}).fit(
            digits_classifier(), train, val)
        assert _warnings(caplog) == []  # a fit that trained: no such warning
        green = _green()
        lightning.Trainer(callbacks=[green], **kwargs).fit(digits_classifier(), train, val,
                                                           ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert len(_warnings(caplog)) == 1
    _one_finished_point(green)


def test_no_training_batches_says_it_trained_no_epoch(mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    train, val = loaders()
    green = _green()
    with caplog.at_level(logging.WARNING, logger="mlflow_green"):
        lightning.Trainer(callbacks=[green], **{**quiet_trainer_kwargs(), "max_epochs": 2, "limit_train_batches": 0}).fit(
            digits_classifier(), train, val)
    assert len(_warnings(caplog)) == 1
    _one_finished_point(green)
