"""Keras fits in two threads of one process at once (a web app serving two training requests, a thread-based search).

One GreenCallback given to both (a module-level callback) mixed the two fits into one session: a wrong warning
("given to a fit started inside the fit it measures"), the first fit's run FAILED with 2 of its 3 epochs, the
second's RUNNING without its report, or two points per step. Now the fit that comes second stands aside,
unmeasured, with a warning saying why; the first is measured whole. Two callbacks, one per fit, each measure
their own fit, with a warning that the process's energy is in both runs while they overlap.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient

keras = pytest.importorskip("keras")

from green_invariants import assert_green_invariants  # noqa: E402
from threaded_fits import (  # noqa: E402
    PausesOnce,
    assert_each_measured_its_own,
    assert_the_first_measured_alone,
    fits_at_once,
    warnings_while,
)

from mlflow_green.integrations.keras import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

X = np.random.default_rng(0).random((256, 16)).astype("float32")
Y = np.random.default_rng(1).integers(0, 4, 256)


def _model() -> keras.Model:
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(4)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class PauseOnce(PausesOnce, keras.callbacks.Callback):
    """Holds a fit after its first epoch, an evaluate after its first batch, until the other thread's call has run."""

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.pause()

    def on_test_batch_end(self, batch: int, logs: Any = None) -> None:
        self.pause()


def _fits_at_once(first_callback: GreenCallback, second_callback: GreenCallback) -> dict[str, str]:
    """A fit of 3 epochs in a thread, held after its first epoch while a fit of 2 epochs runs in the main thread."""
    return fits_at_once(
        lambda in_fit, go_on: _model().fit(X, Y, epochs=3, batch_size=32, verbose=0,
                                           callbacks=[first_callback, PauseOnce(in_fit, go_on)]),
        lambda: _model().fit(X, Y, epochs=2, batch_size=32, verbose=0, callbacks=[second_callback]))


def test_one_callback_given_to_two_fits_at_once_measures_the_first_and_the_second_stands_aside(
        mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    warnings = warnings_while(caplog, lambda: _fits_at_once(cb, cb))
    assert any("measuring a call in another thread; this fit (thread MainThread) goes unmeasured" in w for w in warnings)
    assert not any("inside the fit it measures" in w for w in warnings)
    assert_the_first_measured_alone(cb, mlflow_experiment)


def test_the_measured_fit_keeps_its_model_when_the_fit_standing_aside_gives_the_callback_its_own(
        mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    """Keras's ``CallbackList`` of the fit that stands aside gives the shared callback that fit's model
    (``set_model``): the measured fit's later hooks then read the other model — its figures (parameters at the fit's
    end, samples from its counters) and, on JAX, its state synced mid-step from the wrong thread (the other fit
    failed: "Buffer has been deleted or donated"). The measured call's hooks use the model whose ``fit`` runs them."""
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    small, large = _model(), keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(4)])
    large.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    warnings = warnings_while(caplog, lambda: fits_at_once(
        lambda in_fit, go_on: small.fit(X, Y, epochs=3, batch_size=32, verbose=0, callbacks=[cb, PauseOnce(in_fit, go_on)]),
        lambda: large.fit(X, Y, epochs=2, batch_size=32, verbose=0, callbacks=[cb])))
    assert any("measuring a call in another thread; this fit (thread MainThread) goes unmeasured" in w for w in warnings)
    assert_the_first_measured_alone(cb, mlflow_experiment)
    params = [m.value for m in MlflowClient().get_metric_history(cb.session.run_id, "green/model_params")]
    assert params and set(params) == {small.count_params()}, (params, small.count_params(), large.count_params())
    assert _report(cb)["samples"] == {"train": 3 * len(X)}
    assert cb.model is large  # after both: the last model given, as Keras leaves it


def test_a_callback_list_built_by_the_user_measures_the_model_whose_fit_runs_it(
        mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    """A ``CallbackList`` the user built (``model=`` the small model) and passed to its ``fit`` in a thread: Keras gives
    the callback no model for that call. An ``evaluate`` of another model with the same callback meanwhile (standing
    aside) gave it its own, and the fit's run logged that model's parameters."""
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    small, large = _model(), keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(4)])
    large.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    warnings_while(caplog, lambda: fits_at_once(
        lambda in_fit, go_on: small.fit(X, Y, epochs=3, batch_size=32, verbose=0, callbacks=keras.callbacks.CallbackList(
            [cb, PauseOnce(in_fit, go_on)], add_history=True, model=small)),
        lambda: large.evaluate(X, Y, batch_size=32, verbose=0, callbacks=[cb])))
    assert_the_first_measured_alone(cb, mlflow_experiment)
    params = [m.value for m in MlflowClient().get_metric_history(cb.session.run_id, "green/model_params")]
    assert params and set(params) == {small.count_params()}, (params, small.count_params(), large.count_params())


def test_log_model_after_fits_in_threads_inspects_the_last_measured_fits_model(mlflow_experiment: str) -> None:
    """``cb.log_model()`` with no model: the last measured fit's, from any thread (in the thread that made the callback
    it was None — Keras's ``__init__`` had set it there — when the fits ran in worker threads)."""
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    models = [_model(), keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(4)])]
    models[1].compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for model, where in ((models[0], "thread"), (models[1], "main"), (models[0], "thread")):
        fit = lambda model=model: model.fit(X, Y, epochs=1, batch_size=64, verbose=0, callbacks=[cb])  # noqa: E731
        if where == "thread":
            thread = threading.Thread(target=fit)
            thread.start()
            thread.join(120)
        else:
            fit()
        assert cb.log_model().params == model.count_params()


class StartTogether(keras.callbacks.Callback):
    """Listed before the GreenCallback in both fits: their ``on_train_begin`` hooks reach it at the same moment."""

    def __init__(self, barrier: threading.Barrier) -> None:
        super().__init__()
        self.barrier = barrier

    def on_train_begin(self, logs: Any = None) -> None:
        self.barrier.wait(60)

    on_test_begin = on_predict_begin = on_train_begin


def _at_once(calls: dict[str, Any]) -> dict[str, str]:
    """Each of ``calls`` (named "first" and "second") in a thread of its own, at once; how each ended."""
    ended: dict[str, str] = {}

    def call(name: str) -> None:
        try:
            calls[name]()
            ended[name] = "returned"
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            ended[name] = repr(exc)

    threads = [threading.Thread(target=call, args=(name,), name=name) for name in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return ended


@pytest.mark.parametrize("python_input", [False, True], ids=["arrays", "pydataset"])
def test_one_callback_given_to_two_fits_starting_at_the_same_moment_measures_one(
        python_input: bool, mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    """Both fits start together (each saw the other's watch not yet installed): both were measured into one session —
    two points per step, a second empty run, wrong counts, the first fit's run ended as if nested, on JAX a fit's state
    deleted. Now one is measured whole and the other stands aside with the warning."""
    cb, barrier = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})]), threading.Barrier(2)

    class Batches(keras.utils.PyDataset):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            return X[i * 32:(i + 1) * 32], Y[i * 32:(i + 1) * 32]

    data = {"x": Batches()} if python_input else {"x": X, "y": Y, "batch_size": 32}
    fit = lambda: _model().fit(**data, epochs=3, verbose=0, callbacks=[StartTogether(barrier), cb])  # noqa: E731
    warnings = warnings_while(caplog, lambda: _at_once({"first": fit, "second": fit}))
    assert len([w for w in warnings if "measuring a call in another thread" in w]) == 1, warnings
    assert not any("inside the fit it measures" in w for w in warnings), warnings
    assert_the_first_measured_alone(cb, mlflow_experiment)
    assert _report(cb)["samples"] == {"train": 3 * len(X)}


@pytest.mark.parametrize("second", ["evaluate", "predict"])
def test_a_fit_and_an_evaluation_starting_at_the_same_moment_with_one_callback(
        second: str, mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    """The evaluation's start hook, while the fit in the other thread was still being set up, took it for the fit's
    validation: ``TrackerStateError`` raised into the user's ``evaluate`` at its end. Whichever starts first is
    measured, the other stands aside; nothing is raised into either."""
    cb, barrier = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})]), threading.Barrier(2)
    calls = {"first": lambda: _model().fit(X, Y, epochs=2, batch_size=32, verbose=0, callbacks=[StartTogether(barrier), cb]),
             "second": {"evaluate": lambda: _model().evaluate(X, Y, batch_size=32, verbose=0, callbacks=[StartTogether(barrier), cb]),
                        "predict": lambda: _model().predict(X, batch_size=32, verbose=0, callbacks=[StartTogether(barrier), cb])}[second]}
    warnings = warnings_while(caplog, lambda: _at_once(calls))
    assert len([w for w in warnings if "measuring a call in another thread" in w]) == 1, warnings
    [run] = MlflowClient().search_runs([mlflow_experiment])
    assert run.info.status == "FINISHED" and run.info.run_id == cb.session.run_id


def test_two_callbacks_in_two_fits_at_once_each_measure_their_own_and_say_the_energies_overlap(
        mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    first, second = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})]), GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    assert_each_measured_its_own(first, second, warnings_while(caplog, lambda: _fits_at_once(first, second)))


def test_a_fit_while_another_callback_measures_an_evaluate_in_another_thread_says_the_energies_overlap(
        mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    """An evaluate binds its run only as it ends: a fit started meanwhile in another thread found no call in progress,
    and neither said that each run holds both's energy."""
    evaluating, fitting = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})]), GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    fit = lambda: _model().fit(X, Y, epochs=2, batch_size=32, verbose=0, callbacks=[fitting])  # noqa: E731
    warnings = warnings_while(caplog, lambda: fits_at_once(_evaluate_held(evaluating), fit))
    assert len([w for w in warnings if "another training or evaluation is measured in another thread" in w]) == 2, warnings
    assert evaluating.session.run_id != fitting.session.run_id
    assert MlflowClient().get_run(evaluating.session.run_id).data.metrics[schema.ENERGY_TEST_KWH] > 0
    assert [m.step for m in assert_green_invariants(fitting.session.run_id)[schema.ENERGY_KWH]] == [0, 1]


def _evaluate_held(cb: GreenCallback) -> Any:
    return lambda in_call, go_on: _model().evaluate(X, Y, batch_size=32, verbose=0,
                                                    callbacks=[cb, PauseOnce(in_call, go_on)])


def _only_the_evaluation_measured(cb: GreenCallback, experiment_id: str) -> None:
    from mlflow import MlflowClient

    from mlflow_green.record import schema

    [run] = MlflowClient().search_runs([experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_id == cb.session.run_id
    assert schema.ENERGY_TEST_KWH in run.data.metrics
    assert schema.ENERGY_KWH not in run.data.metrics  # no fit's epochs in it
    assert len(MlflowClient().get_metric_history(run.info.run_id, schema.ENERGY_TEST_KWH)) == 1


@pytest.mark.parametrize("second", ["fit", "predict"])
def test_a_call_starting_while_the_same_callback_measures_an_evaluate_in_another_thread_stands_aside(
        second: str, mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    other = {"fit": lambda: _model().fit(X, Y, epochs=2, batch_size=32, verbose=0, callbacks=[cb]),
             "predict": lambda: _model().predict(X, batch_size=32, verbose=0, callbacks=[cb])}[second]
    warnings = warnings_while(caplog, lambda: fits_at_once(_evaluate_held(cb), other))  # the evaluate raised nothing
    assert any(f"measuring a call in another thread; this {second} (thread MainThread) goes unmeasured" in w
               for w in warnings), warnings
    _only_the_evaluation_measured(cb, mlflow_experiment)


def test_two_evaluates_at_once_with_one_callback_measure_the_first(mlflow_experiment: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    second = lambda: _model().evaluate(X[:64], Y[:64], batch_size=32, verbose=0, callbacks=[cb])  # noqa: E731
    warnings = warnings_while(caplog, lambda: fits_at_once(_evaluate_held(cb), second))
    assert any("measuring a call in another thread; this evaluate (thread MainThread) goes unmeasured" in w
               for w in warnings), warnings
    _only_the_evaluation_measured(cb, mlflow_experiment)
    assert _report(cb)["samples"] == {"test": len(X)}  # the first's 256 samples, not the second's 64


def _report(cb: GreenCallback) -> dict:
    import json
    import tempfile
    from pathlib import Path

    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(MlflowClient().download_artifacts(cb.session.run_id, "green/report.json", tmp)).read_text())



class RaisesInMainThread(keras.callbacks.Callback):
    """One callback object in both fits (a module-level metrics pusher): its batch hook fails in the main thread only."""

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if threading.current_thread() is threading.main_thread() and batch == 2:
            raise RuntimeError("the push failed")


def test_a_callback_shared_by_two_fits_failing_in_one_ends_that_fits_run_only(mlflow_experiment: str) -> None:
    """Each fit's guard watches the shared callback's own batch hook; an exception in the main thread's fit ends that
    fit's run, not the run of the fit in the other thread (whose guard wrapped the hook first)."""
    first, second = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})]), GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    shared = RaisesInMainThread()

    def second_fit() -> None:
        with pytest.raises(RuntimeError, match="the push failed"):
            _model().fit(X, Y, epochs=2, batch_size=32, verbose=0, callbacks=[second, shared])

    ended = fits_at_once(
        lambda in_fit, go_on: _model().fit(X, Y, epochs=3, batch_size=32, verbose=0,
                                           callbacks=[first, shared, PauseOnce(in_fit, go_on)]),
        second_fit)
    assert ended == {"first": "returned", "second": "returned"}, ended
    client = MlflowClient()
    assert client.get_run(first.session.run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(first.session.run_id, "green/energy_kwh")] == [0, 1, 2]
    assert client.get_run(second.session.run_id).info.status == "FAILED"
    assert not [name for name in dir(shared) if getattr(getattr(shared, name, None), "_green_guard", None) is not None]
