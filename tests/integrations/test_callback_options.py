"""Every training callback takes the same options under the same names — ``scope`` included — and
``mlflow_green.autolog(**options)`` passes each of them on (issue 10: ``scope`` as an argument and
``MLFLOW_GREEN_SCOPE``; issue 15: autolog's options are the callbacks')."""

from __future__ import annotations

import importlib
import inspect
import logging

import pytest
from mlflow import MlflowClient

import mlflow_green
import mlflow_green.autologging
from mlflow_green.errors import ConfigError
from mlflow_green.record import schema
from mlflow_green.training.callback_options import CALLBACK_OPTIONS

CALLBACKS = {
    "keras": "keras",
    "lightning": "lightning",
    "pytorch_lightning": "pytorch_lightning",
    "transformers": "transformers",
}
"""Integration module → the framework it needs."""


def _callback_class(module: str) -> type:
    pytest.importorskip(CALLBACKS[module])  # the framework's extra (the core suite runs without it)
    return importlib.import_module(f"mlflow_green.integrations.{module}").GreenCallback


@pytest.mark.parametrize("module", list(CALLBACKS))
def test_every_callback_takes_every_shared_option_by_name(module: str) -> None:
    parameters = inspect.signature(_callback_class(module).__init__).parameters
    missing = [name for name in CALLBACK_OPTIONS if name not in parameters]
    assert missing == []
    assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY for name in CALLBACK_OPTIONS)


def test_autolog_takes_exactly_the_callbacks_options() -> None:
    assert mlflow_green.autologging.callback_options() == CALLBACK_OPTIONS
    for internal in ("synchronize", "framework_gpus", "config", "clock"):  # the tracker's own hooks are not options
        with pytest.raises(ConfigError, match=internal):
            mlflow_green.autolog(**{internal: None})
        assert not mlflow_green.autologging.is_enabled()


@pytest.mark.parametrize("module", list(CALLBACKS))
def test_scope_is_an_argument_of_every_callback_and_wins_over_the_variable(
        module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    callback_class = _callback_class(module)
    assert callback_class().session.template.config.scope == "process"
    assert callback_class(scope="machine").session.template.config.scope == "machine"
    monkeypatch.setenv("MLFLOW_GREEN_SCOPE", "machine")
    assert callback_class().session.template.config.scope == "machine"
    assert callback_class(scope="process").session.template.config.scope == "process"
    with pytest.raises(ConfigError, match="scope"):
        callback_class(scope="galaxy")
    with pytest.raises(ConfigError, match="MLFLOW_GREEN_SCOPE"):
        monkeypatch.setenv("MLFLOW_GREEN_SCOPE", "cluster")
        callback_class()


def _keras_fit(digits: tuple) -> None:
    keras = pytest.importorskip("keras")
    x, y, _, _ = digits
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:256], y[:256], epochs=1, batch_size=128, verbose=0)


def _lightning_fit(digits: tuple) -> None:
    lightning = pytest.importorskip("lightning")
    from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs

    train, _ = loaders(batch_size=256)
    lightning.Trainer(max_epochs=1, limit_train_batches=2, **quiet_trainer_kwargs()).fit(digits_classifier(), train)


@pytest.mark.parametrize("fit", [_keras_fit, _lightning_fit], ids=["keras", "lightning"])
def test_autolog_passes_scope_to_the_callback_it_adds(
        fit, mlflow_experiment: str, digits: tuple, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    try:
        with caplog.at_level(logging.WARNING, logger="mlflow_green"):
            mlflow_green.autolog(scope="machine", start_timeout_s=5, end_timeout_s=20)
            fit(digits)
    finally:
        mlflow_green.autolog(disable=True)
    [run] = MlflowClient().search_runs([mlflow_experiment])
    assert run.data.tags[schema.TAG_SCOPE].split(",") == ["cpu:machine", "ram:machine"]
    assert not [r for r in caplog.records if "has no option" in r.getMessage()]


@pytest.mark.parametrize("module", list(CALLBACKS))
def test_a_quality_metric_where_lower_is_better_is_warned_about_at_construction(
        module: str, caplog: pytest.LogCaptureFixture) -> None:
    callback = _callback_class(module)
    with caplog.at_level(logging.WARNING, logger="mlflow_green"):
        callback(quality_metric="val_loss")
        callback(quality_metric="eval_mse")
        callback(quality_metric="val_accuracy")
    warned = [r.getMessage() for r in caplog.records if "lower is better" in r.getMessage()]
    assert len(warned) == 2 and "'val_loss'" in warned[0] and "'eval_mse'" in warned[1]
