"""A fit with nothing left to train (``initial_epoch`` at its last epoch): a finished run of one point, and a warning."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from mlflow import MlflowClient

keras = pytest.importorskip("keras")

from mlflow_green.integrations.keras import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

X = np.random.default_rng(0).random((64, 4)).astype("float32")
Y = (X[:, 0] > 0.5).astype("int64")


def _model() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_a_fit_starting_at_its_last_epoch_says_it_trained_no_epoch(mlflow_experiment: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    with caplog.at_level(logging.WARNING, logger="mlflow_green"):
        _model().fit(X, Y, epochs=3, initial_epoch=3, verbose=0, callbacks=[cb])  # nothing left to train
        _model().fit(X, Y, epochs=1, verbose=0, callbacks=[GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])])
    said = [r.getMessage() for r in caplog.records if "finished without an epoch ending" in r.getMessage()]
    assert len(said) == 1, said  # the fit that trained nothing, not the other
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in MlflowClient().get_metric_history(run.info.run_id, schema.ENERGY_KWH)] == [0]


def test_a_fit_on_empty_input_counts_no_sample_and_says_so(mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    """TensorFlow runs the epochs of an empty array without a step (torch and JAX refuse it), and its metrics count a
    batch anyway: no sample is counted, so no per-sample figure is made up."""
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    with caplog.at_level(logging.WARNING, logger="mlflow_green"):
        try:
            _model().fit(X[:0], Y[:0], epochs=2, verbose=0, callbacks=[cb])
        except ValueError:  # torch and JAX: Keras refuses an empty input before training
            pytest.skip(f"Keras on {keras.backend.backend()} refuses an empty input")
    assert any("trained no batch" in r.getMessage() for r in caplog.records)
    metrics = MlflowClient().get_run(cb.session.run_id).data.metrics
    assert schema.ENERGY_KWH in metrics
    assert schema.ENERGY_PER_SAMPLE_J not in metrics and schema.FLOP_PER_J not in metrics
    assert cb.session.samples.get("train", 0) == 0
