"""Which run the callbacks and ``track()`` log into outside the usual active run: ``MLFLOW_RUN_ID`` (what
``mlflow run`` sets for its entry point), and ``log_model`` called before any fit; a ``log_model`` given
something that is not a model says so."""

from __future__ import annotations

import os
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

pytest.importorskip("lightning")
keras = pytest.importorskip("keras")

import lightning  # noqa: E402
from green_invariants import assert_green_invariants  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402

import mlflow_green  # noqa: E402
from mlflow_green.errors import ArgumentTypeError  # noqa: E402
from mlflow_green.integrations import keras as green_keras  # noqa: E402
from mlflow_green.integrations import lightning as green_lightning  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

X = np.random.default_rng(0).random((64, 4)).astype("float32")
Y = (X[:, 0] > 0.5).astype("int64")


def _meters() -> list[Any]:
    return [FakeMeter({"cpu:0": 100.0})]


def _keras_model() -> Any:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _lightning_fit(green: Any) -> None:
    train, val = loaders()
    kwargs = {**quiet_trainer_kwargs(), "max_epochs": 2, "limit_train_batches": 3, "limit_val_batches": 1}
    lightning.Trainer(callbacks=[green], **kwargs).fit(digits_classifier(), train, val)


@pytest.fixture()
def launcher_run(mlflow_experiment: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A run made the way ``mlflow run`` makes it, named by ``MLFLOW_RUN_ID``; no run active."""
    run_id = MlflowClient().create_run(mlflow_experiment).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    assert mlflow.active_run() is None
    return run_id


@pytest.mark.parametrize("framework", ["lightning", "keras"])
def test_mlflow_run_id_names_the_run_the_callback_logs_into_and_leaves_running(framework: str, launcher_run: str) -> None:
    if framework == "lightning":
        green = green_lightning.GreenCallback(meters=_meters())
        _lightning_fit(green)
    else:
        green = green_keras.GreenCallback(meters=_meters())
        _keras_model().fit(X, Y, epochs=2, verbose=0, callbacks=[green])
    assert green.session.run_id == launcher_run
    client = MlflowClient()
    run = client.get_run(launcher_run)
    assert run.info.status == "RUNNING"  # the launcher's to end, not ours
    assert schema.ENERGY_KWH in run.data.metrics
    assert_green_invariants(launcher_run, client)
    assert [r.info.run_id for r in client.search_runs([run.info.experiment_id])] == [launcher_run]  # no run of its own
    assert mlflow.active_run() is None


def test_mlflow_run_id_names_the_run_track_logs_into(launcher_run: str) -> None:
    with mlflow_green.track(meters=_meters()) as first:
        sum(range(10_000))
    with mlflow_green.track(meters=_meters()) as second:  # the run holds the first block's totals: a child run
        sum(range(10_000))
    client = MlflowClient()
    assert first.run_id == launcher_run
    assert client.get_run(launcher_run).info.status == "RUNNING"
    child = client.get_run(second.run_id)
    assert child.data.tags.get("mlflow.parentRunId") == launcher_run
    assert child.info.status == "FINISHED"


@pytest.mark.parametrize("framework", ["lightning", "keras"])
def test_log_model_before_any_fit_ends_its_run_and_leaves_nothing_active(framework: str, mlflow_experiment: str) -> None:
    if framework == "lightning":
        green = green_lightning.GreenCallback(meters=_meters())
        profile = green.log_model(digits_classifier())  # the baseline's size, before training
    else:
        green = green_keras.GreenCallback(meters=_meters())
        profile = green.log_model(_keras_model())
    assert profile is not None and profile.params > 0
    baseline = green.session.run_id
    client = MlflowClient()
    assert client.get_run(baseline).info.status == "FINISHED"
    assert client.get_run(baseline).data.metrics[schema.MODEL_PARAMS] == profile.params
    assert mlflow.active_run() is None
    with mlflow.start_run() as users:  # the user's next run starts (it raised "already active")
        pass
    assert client.get_run(users.info.run_id).info.status == "FINISHED"
    if framework == "lightning":  # a fit afterwards: measured and ended as usual
        _lightning_fit(green)
    else:
        _keras_model().fit(X, Y, epochs=2, verbose=0, callbacks=[green])
    run = client.get_run(green.session.run_id)
    assert run.info.status == "FINISHED" and mlflow.active_run() is None
    assert_green_invariants(run.info.run_id, client)


@pytest.mark.parametrize("not_a_model", [{"weight": 1}, "model.ckpt", None], ids=["state_dict", "path", "none"])
def test_log_model_of_something_that_is_not_a_model_says_so(not_a_model: Any, mlflow_experiment: str) -> None:
    for green, expected in ((green_lightning.GreenCallback(meters=_meters()), "torch.nn.Module"),
                            (green_keras.GreenCallback(meters=_meters()), "keras.Model")):
        with pytest.raises(ArgumentTypeError, match=expected):
            green.log_model(not_a_model)
    assert not os.environ.get("MLFLOW_RUN_ID")
    assert MlflowClient().search_runs([mlflow_experiment]) == []  # nothing logged


def test_run_name_of_a_callback_logging_into_the_users_run_is_said_to_be_unused(
        mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    green = green_keras.GreenCallback(meters=_meters(), run_name="baseline-cnn")
    with caplog.at_level("WARNING", logger="mlflow_green"), mlflow.start_run(run_name="mine") as users:
        _keras_model().fit(X, Y, epochs=1, verbose=0, callbacks=[green])
        _keras_model().fit(X, Y, epochs=1, verbose=0, callbacks=[green])
    said = [r.getMessage() for r in caplog.records if "run_name='baseline-cnn'" in r.getMessage()]
    assert len(said) == 1  # once, not at every fit
    assert MlflowClient().get_run(users.info.run_id).info.run_name == "mine"
    own = green_keras.GreenCallback(meters=_meters(), run_name="baseline-cnn")
    with caplog.at_level("WARNING", logger="mlflow_green"):
        _keras_model().fit(X, Y, epochs=1, verbose=0, callbacks=[own])  # its own run: named, nothing said
    assert MlflowClient().get_run(own.session.run_id).info.run_name == "baseline-cnn"
    assert len([r for r in caplog.records if "run_name='baseline-cnn'" in r.getMessage()]) == 1
