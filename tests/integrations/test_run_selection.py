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
    assert client.get_run(baseline).data.tags[schema.TAG_VERSION] == mlflow_green.__version__
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


class _KerasUsersLogger(keras.callbacks.Callback):
    """A logger of the user's own: its run, started as the fit begins and ended as it ends."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        mlflow.start_run(run_name="mine")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        mlflow.log_metrics(logs or {}, step=epoch)

    def on_train_end(self, logs: dict | None = None) -> None:
        mlflow.end_run()


class _LightningUsersLogger(lightning.Callback):
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        mlflow.start_run(run_name="mine")

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        mlflow.log_metric("epoch_seen", trainer.current_epoch, step=trainer.current_epoch)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        mlflow.end_run()


@pytest.mark.parametrize("framework", ["lightning", "keras"])
def test_a_callback_of_the_users_starting_its_own_run_as_the_fit_begins_still_can(framework: str,
                                                                                  mlflow_experiment: str) -> None:
    """The callback's own run becomes MLflow's active run at the first epoch, not as the fit begins: a user's
    logger listed after it that calls ``mlflow.start_run()`` then (it raised "Run ... is already active") works."""
    if framework == "lightning":
        green = green_lightning.GreenCallback(meters=_meters())
        train, val = loaders()
        kwargs = {**quiet_trainer_kwargs(), "max_epochs": 2, "limit_train_batches": 3, "limit_val_batches": 1}
        lightning.Trainer(callbacks=[green, _LightningUsersLogger()], **kwargs).fit(digits_classifier(), train, val)
        users_key = "epoch_seen"
    else:
        green = green_keras.GreenCallback(meters=_meters())
        _keras_model().fit(X, Y, epochs=2, verbose=0, callbacks=[green, _KerasUsersLogger()])
        users_key = "loss"
    client = MlflowClient()
    [mine] = [r for r in client.search_runs([mlflow_experiment]) if r.info.run_name == "mine"]
    assert mine.info.status == "FINISHED" and users_key in mine.data.metrics
    ours = client.get_run(green.session.run_id)
    assert ours.info.run_id != mine.info.run_id and ours.info.status == "FINISHED"
    assert_green_invariants(ours.info.run_id, client)
    assert mlflow.active_run() is None


def test_the_callbacks_own_run_is_the_active_run_during_the_fit(mlflow_experiment: str) -> None:
    seen: list[str | None] = []
    peek = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(
        mlflow.active_run().info.run_id if mlflow.active_run() else None))
    green = green_keras.GreenCallback(meters=_meters())
    _keras_model().fit(X, Y, epochs=2, verbose=0, callbacks=[green, peek])
    assert seen == [green.session.run_id] * 2  # the user's mlflow.log_* inside the fit go into it
    assert mlflow.active_run() is None and mlflow.last_active_run().info.run_id == green.session.run_id


@pytest.mark.parametrize("call", ["fit", "evaluate"])
def test_a_callback_in_a_run_holding_a_track_block_gets_a_child_run(call: str, mlflow_experiment: str,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """As a block after a fit's figures does: the block's totals and steps are left as they are (its energy went
    down, its report was overwritten and an evaluation took its step 0)."""
    green = green_keras.GreenCallback(meters=_meters())
    with caplog.at_level("WARNING", logger="mlflow_green"), mlflow.start_run() as users:
        with mlflow_green.track(meters=_meters()):
            sum(range(10_000))
        client = MlflowClient()
        before = [(m.step, m.value) for m in client.get_metric_history(users.info.run_id, schema.ENERGY_KWH)]
        if call == "fit":
            _keras_model().fit(X, Y, epochs=2, verbose=0, callbacks=[green])
        else:
            _keras_model().evaluate(X, Y, verbose=0, callbacks=[green])
    assert [(m.step, m.value) for m in client.get_metric_history(users.info.run_id, schema.ENERGY_KWH)] == before
    child = client.get_run(green.session.run_id)
    assert child.data.tags.get("mlflow.parentRunId") == users.info.run_id and child.info.status == "FINISHED"
    if call == "fit":
        assert_green_invariants(child.info.run_id, client)
    else:
        assert child.data.metrics[schema.ENERGY_TEST_KWH] > 0
    assert any("holds a track() block's green/ figures" in r.getMessage() for r in caplog.records)
    assert not any("KeyError" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("named", ["missing", "deleted"])
def test_mlflow_run_id_naming_no_usable_run_says_so_and_measures_into_a_run_of_its_own(
        named: str, mlflow_experiment: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    client = MlflowClient()
    if named == "deleted":
        run_id = client.create_run(mlflow_experiment).info.run_id
        client.delete_run(run_id)
    else:
        run_id = "0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    green = green_keras.GreenCallback(meters=_meters())
    with caplog.at_level("WARNING", logger="mlflow_green"):
        _keras_model().fit(X, Y, epochs=2, verbose=0, callbacks=[green])
    said = [r.getMessage() for r in caplog.records if "MLFLOW_RUN_ID=" + run_id in r.getMessage()]
    assert len(said) == 1 and ("was deleted" if named == "deleted" else "does not exist") in said[0]
    assert green.session.run_id not in (None, run_id)
    assert client.get_run(green.session.run_id).info.status == "FINISHED"
    assert_green_invariants(green.session.run_id, client)
    assert not [r for r in caplog.records if "refused a write" in r.getMessage()]
