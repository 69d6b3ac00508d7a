"""mlflow_green.autolog() and Keras 3: every fit measured with no change to the training code."""

from __future__ import annotations

import mlflow
import pytest

keras = pytest.importorskip("keras")

from autolog_fixtures import autolog_off, runs_of, steps  # noqa: E402

import mlflow_green  # noqa: E402
from mlflow_green.integrations.keras import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402

_off = pytest.fixture(autouse=True)(autolog_off)


def _mlp() -> keras.Model:
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_every_fit_gets_the_callback_and_a_second_fit_continues_the_run(mlflow_experiment: str, digits) -> None:
    x, y, xv, yv = digits
    mlflow_green.autolog(region="FR")
    model = _mlp()
    with mlflow.start_run() as run:  # the training code below has no mlflow-green line
        model.fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=128, verbose=0)
        model.fit(x, y, validation_data=(xv, yv), epochs=1, batch_size=128, verbose=0)
    [logged] = runs_of(mlflow_experiment)
    assert logged.info.run_id == run.info.run_id
    assert steps(run.info.run_id, schema.EPOCH_ENERGY_KWH) == [0, 1, 2]   # one callback per model: steps go on
    assert logged.data.tags[schema.TAG_REGION] == "FRA"                  # the options given to autolog
    assert logged.data.tags[schema.TAG_QUALITY_METRIC] == "val_accuracy"
    assert logged.data.metrics[schema.MODEL_PARAMS] == 64 * 16 + 16 + 16 * 10 + 10


def test_a_fit_without_a_run_gets_its_own_and_a_users_callback_is_not_doubled(mlflow_experiment: str, digits) -> None:
    x, y, xv, yv = digits
    mlflow_green.autolog()
    _mlp().fit(x, y, epochs=1, batch_size=256, verbose=0)
    cb = GreenCallback(run_name="mine")
    _mlp().fit(x, y, epochs=2, batch_size=256, verbose=0, callbacks=[cb])
    first, second = runs_of(mlflow_experiment)
    assert first.info.status == "FINISHED" and schema.ENERGY_KWH in first.data.metrics
    assert second.info.run_id == cb.session.run_id and second.info.run_name == "mine"
    assert steps(second.info.run_id, schema.EPOCH_ENERGY_KWH) == [0, 1]  # one callback, not two
    assert mlflow.active_run() is None


def test_disable_puts_keras_back(mlflow_experiment: str, digits) -> None:
    x, y, _, _ = digits
    init = keras.callbacks.CallbackList.__init__
    mlflow_green.autolog()
    assert keras.callbacks.CallbackList.__init__ is not init
    mlflow_green.autolog(disable=True)
    assert keras.callbacks.CallbackList.__init__ is init
    _mlp().fit(x, y, epochs=1, batch_size=256, verbose=0)
    assert runs_of(mlflow_experiment) == []


def test_evaluate_and_predict_alone_are_left_alone(mlflow_experiment: str, digits) -> None:
    x, y, _, _ = digits
    mlflow_green.autolog()
    model = _mlp()
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert runs_of(mlflow_experiment) == []
