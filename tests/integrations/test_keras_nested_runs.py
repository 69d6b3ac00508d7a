"""Which run a Keras call with its own GreenCallback logs into when another call is being measured.

Inside another measured call on the same thread (a probe fitted in a callback of an outer fit): a child
of the outer call's run — also when that run was created late, in the background (a slow or new store),
and so is not MLflow's active run. Not inside one: its own run, or the active run — a fit in another
thread, an evaluate right after a fit that Keras's own code ended (its watch has not looked yet).
"""

from __future__ import annotations

import threading
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

keras = pytest.importorskip("keras")

from mlflow_green.integrations.keras import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402


def _mlp() -> keras.Model:
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_a_probe_inside_a_fit_whose_run_was_created_late_is_still_its_child(fresh_store: Path, digits) -> None:
    x, y, _, _ = digits
    probes: list[GreenCallback] = []

    def probe(epoch: int, logs: dict) -> None:
        probes.append(GreenCallback(run_name=f"probe{epoch}"))
        _mlp().fit(x[:200], y[:200], epochs=1, batch_size=100, verbose=0, callbacks=[probes[-1]])

    outer = GreenCallback(run_name="outer")
    _mlp().fit(x, y, epochs=2, batch_size=200, verbose=0, callbacks=[outer, keras.callbacks.LambdaCallback(on_epoch_end=probe)])
    client = MlflowClient()
    for cb in probes:
        assert client.get_run(cb.session.run_id).data.tags.get("mlflow.parentRunId") == outer.session.run_id
    assert [m.step for m in client.get_metric_history(outer.session.run_id, schema.ENERGY_KWH)] == [0, 1]


def test_a_fit_in_another_thread_meanwhile_gets_its_own_run(mlflow_experiment: str, digits) -> None:
    x, y, _, _ = digits
    other, started = GreenCallback(run_name="other"), threading.Event()

    def other_fit() -> None:
        _mlp().fit(x[:200], y[:200], epochs=1, batch_size=100, verbose=0, callbacks=[other])

    def start_other(epoch: int, logs: dict) -> None:
        if epoch == 0:
            thread = threading.Thread(target=other_fit)
            thread.start()
            thread.join()
            started.set()

    outer = GreenCallback(run_name="outer")
    _mlp().fit(x, y, epochs=2, batch_size=200, verbose=0, callbacks=[outer, keras.callbacks.LambdaCallback(on_epoch_end=start_other)])
    assert started.is_set()
    run = MlflowClient().get_run(other.session.run_id)
    assert other.session.run_id != outer.session.run_id and "mlflow.parentRunId" not in run.data.tags


def test_an_evaluate_right_after_a_fit_keras_own_code_ended_is_not_taken_as_inside_it(mlflow_experiment: str, digits) -> None:
    x, y, xv, yv = digits
    fit_cb, eval_cb = GreenCallback(), GreenCallback()
    with mlflow.start_run() as user:
        model = _mlp()
        with pytest.raises(ValueError):  # validation inputs and targets of different lengths: raised in Keras's own code
            model.fit(x, y, validation_data=(xv[:50], yv[:40]), epochs=2, batch_size=200, verbose=0, callbacks=[fit_cb])
        model.evaluate(xv, yv, batch_size=100, verbose=0, callbacks=[eval_cb])  # at once: before the fit's watch looks
    assert eval_cb.session.run_id == user.info.run_id == fit_cb.session.run_id, "the user's run, as asked"
    assert MlflowClient().get_run(user.info.run_id).data.metrics[schema.ENERGY_TEST_KWH] > 0
