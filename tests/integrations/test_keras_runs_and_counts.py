"""Keras cases an adversarial round found (stop 29), each on a real tiny ``fit`` (the suite's backend):

- MLflow's own Keras callback in the fit logs every key of ``logs``: the live figures are not put there
  (two points at every step otherwise);
- an ``evaluate`` after a fit, inside a run the user started since, logs into that run;
- an ``evaluate`` with the fit's callback from another callback's epoch end is validation (energy and samples);
- (TensorFlow) a batch whose train step raised is not counted as trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from green_invariants import assert_green_invariants
from mlflow import MlflowClient

keras = pytest.importorskip("keras")

from mlflow_green.integrations.keras import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

J_PER_KWH = 3.6e6


def _green(**options: object) -> GreenCallback:
    return GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})], **options)


def _mlp() -> keras.Model:
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


class _UsersMlflowCallback(mlflow.keras.MlflowCallback):
    """A user's subclass of MLflow's callback (defined outside ``mlflow``: its module is this test's)."""


@pytest.mark.parametrize("mlflows", [mlflow.keras.MlflowCallback, _UsersMlflowCallback])
def test_beside_mlflows_keras_callback_each_green_metric_has_one_point_per_step(mlflow_experiment: str, digits,
                                                                                mlflows: type) -> None:
    x, y, _, _ = digits
    with mlflow.start_run() as run:
        history = _mlp().fit(x, y, epochs=2, batch_size=200, verbose=0, callbacks=[_green(), mlflows()])
    hist = assert_green_invariants(run.info.run_id)
    assert [m.step for m in hist[schema.ENERGY_KWH]] == [0, 1]
    assert not [key for key in history.history if key.startswith("green/")]


def test_an_evaluate_after_the_fit_inside_a_run_started_since_logs_into_that_run(mlflow_experiment: str, digits) -> None:
    x, y, xv, yv = digits
    green, model = _green(), _mlp()
    model.fit(x, y, epochs=1, batch_size=200, verbose=0, callbacks=[green])
    fit_run = green.session.run_id
    with mlflow.start_run() as mine:
        model.evaluate(xv, yv, verbose=0, callbacks=[green])
    client = MlflowClient()
    assert schema.phase_energy_key("test") in client.get_run(mine.info.run_id).data.metrics
    assert schema.phase_energy_key("test") not in client.get_run(fit_run).data.metrics


def test_evaluations_after_the_users_later_run_ended_go_back_into_the_fits_run(mlflow_experiment: str, digits,
                                                                               tmp_path: Path) -> None:
    """fit (its own run) -> evaluate in the user's run A -> A ends -> evaluate, no run active: into the fit's run,
    its running total and steps going on; -> run B -> evaluate -> B ends -> evaluate: the fit's again (both stayed in
    the user's last run, which had ended). Samples per run are those evaluated there."""
    x, y, xv, yv = digits
    green, model = _green(), _mlp()
    model.fit(x, y, epochs=2, batch_size=200, verbose=0, callbacks=[green])
    fit_run, client, test_key = green.session.run_id, MlflowClient(), schema.phase_energy_key("test")
    model.evaluate(xv[:100], yv[:100], verbose=0, callbacks=[green])  # the fit's run (none active)
    with mlflow.start_run() as first:
        model.evaluate(xv[:60], yv[:60], verbose=0, callbacks=[green])
    model.evaluate(xv[:70], yv[:70], verbose=0, callbacks=[green])
    with mlflow.start_run() as second:
        model.evaluate(xv[:80], yv[:80], verbose=0, callbacks=[green])
        model.evaluate(xv[:90], yv[:90], verbose=0, callbacks=[green])
    green.log_model()  # the trained model's profile: the fit's run too
    assert green.session.run_id == fit_run
    model.evaluate(xv[:110], yv[:110], verbose=0, callbacks=[green])
    assert green.session.run_id == fit_run
    points = client.get_metric_history(fit_run, test_key)
    assert [p.step for p in sorted(points, key=lambda p: p.step)] == [1, 2, 3]  # from the fit's last step (epochs 0, 1)
    values = [p.value for p in sorted(points, key=lambda p: p.step)]
    assert values == sorted(values) and values[0] > 0  # one running total, going on
    report = _report(client, fit_run, tmp_path)
    assert report["samples"] == {"train": 2 * len(x), "test": 100 + 70 + 110}
    assert report["phases"]["test"]["energy_j"] == pytest.approx(values[-1] * J_PER_KWH, rel=1e-6)
    assert_green_invariants(fit_run)
    for run, evaluated in ((first, [60]), (second, [80, 90])):
        history = client.get_metric_history(run.info.run_id, test_key)
        assert len(history) == len(evaluated), history
        report = _report(client, run.info.run_id, tmp_path)
        assert report["samples"] == {"test": sum(evaluated)}
        assert client.get_run(run.info.run_id).info.status == "FINISHED"


def _report(client: MlflowClient, run_id: str, tmp_path: Path) -> dict:
    return json.loads(Path(client.download_artifacts(run_id, "green/report.json", str(tmp_path))).read_text())


def test_an_evaluate_with_the_fits_callback_between_epochs_is_validation(mlflow_experiment: str, digits) -> None:
    x, y, xv, yv = digits
    green = _green()

    class EvaluateAtEpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.model.evaluate(xv[:200], yv[:200], verbose=0, callbacks=[green])

    _mlp().fit(x, y, epochs=2, batch_size=200, verbose=0, callbacks=[green, EvaluateAtEpochEnd()])
    run = MlflowClient().get_run(green.session.run_id)
    assert_green_invariants(run.info.run_id)
    assert green.session.samples["validation"] == 400
    validation_j = run.data.metrics[schema.ENERGY_VALIDATION_KWH] * J_PER_KWH
    assert validation_j > 0
    assert schema.phase_energy_key("test") not in run.data.metrics


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow counts the failing batch; the others do not")
def test_tensorflow_a_batch_whose_step_raised_is_not_counted(mlflow_experiment: str, digits) -> None:
    x, y, _, _ = digits
    y = y.copy()
    y[1000] = 99  # the 11th batch of 100 raises in the loss
    green = _green()
    with pytest.raises(Exception, match="99"):
        _mlp().fit(x, y, epochs=2, batch_size=100, shuffle=False, verbose=0, callbacks=[green])
    assert green.session.samples["train"] == 1000
    run = MlflowClient().get_run(green.session.run_id)
    assert run.info.status == "FAILED"
    energy_j = run.data.metrics[schema.ENERGY_KWH] * J_PER_KWH
    assert run.data.metrics[schema.ENERGY_PER_SAMPLE_J] == pytest.approx(energy_j / 1000, rel=1e-6)


@pytest.mark.parametrize("validation_freq", [2, [2, 3]])
def test_validating_only_some_epochs_keeps_the_quality_series_one_metric(validation_freq, mlflow_experiment: str,
                                                                          digits) -> None:
    x, y, xv, yv = digits
    green = _green()
    history = _mlp().fit(x, y, validation_data=(xv, yv), validation_freq=validation_freq, epochs=3, batch_size=200,
                         verbose=0, callbacks=[green])
    client = MlflowClient()
    run = client.get_run(green.session.run_id)
    quality = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, schema.QUALITY))
    assert run.data.tags[schema.TAG_QUALITY_METRIC] == "val_accuracy"
    # epoch 0 did not validate: no quality point then (it was the training accuracy, in the same series)
    assert [step for step, _ in quality] == [1, 2]
    assert quality[0][1] == pytest.approx(history.history["val_accuracy"][0])
    assert_green_invariants(run.info.run_id)


def _guides_train_step_model() -> keras.Model:
    """The custom train_step of Keras's guide "Customizing what happens in fit()": the loss tracker updated with the
    loss alone (one per batch, not the batch's samples)."""
    tf = pytest.importorskip("tensorflow")

    class Custom(keras.Sequential):
        def train_step(self, data):
            x, y = data
            with tf.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = self.compute_loss(y=y, y_pred=y_pred)
            self.optimizer.apply(tape.gradient(loss, self.trainable_variables), self.trainable_variables)
            for metric in self.metrics:
                metric.update_state(loss) if metric.name == "loss" else metric.update_state(y, y_pred)
            return {m.name: m.result() for m in self.metrics}

    model = Custom([keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="torch and JAX count the batches read instead")
def test_a_train_step_counting_batches_gives_no_per_sample_figures_rather_than_wrong_ones(
        mlflow_experiment: str, digits, caplog: pytest.LogCaptureFixture) -> None:
    import tensorflow as tf

    x, y, _, _ = digits
    green = _green()
    _guides_train_step_model().fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(64), epochs=2, verbose=0,
                                   callbacks=[green])
    metrics = MlflowClient().get_run(green.session.run_id).data.metrics
    assert schema.ENERGY_PER_SAMPLE_J not in metrics and schema.FLOP_PER_J not in metrics  # were 64x off
    assert any("samples_per_epoch" in r.getMessage() for r in caplog.records)
    counted = _green(samples_per_epoch=len(x))  # told: the figures are back
    _guides_train_step_model().fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(64), epochs=2, verbose=0,
                                   callbacks=[counted])
    metrics = MlflowClient().get_run(counted.session.run_id).data.metrics
    assert metrics[schema.ENERGY_PER_SAMPLE_J] == pytest.approx(metrics[schema.ENERGY_KWH] * J_PER_KWH / (2 * len(x)))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="torch and JAX count the batches read instead")
def test_an_epoch_stopped_at_its_end_counts_its_samples_whole(mlflow_experiment: str, digits) -> None:
    x, y, _, _ = digits
    green = _green()
    stop = keras.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=0)  # stops at epoch 1's end
    _guides_train_step_model().fit(x, y, epochs=5, batch_size=64, verbose=0, callbacks=[stop, green])
    metrics = MlflowClient().get_run(green.session.run_id).data.metrics
    assert metrics[schema.ENERGY_PER_SAMPLE_J] == pytest.approx(metrics[schema.ENERGY_KWH] * J_PER_KWH / (2 * len(x)))


def test_the_fits_own_callback_given_to_a_fit_inside_it_says_what_that_does(mlflow_experiment: str, digits,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    x, y, _, _ = digits
    green = _green()

    class Probe(keras.callbacks.Callback):  # trains a probe at each epoch's end, with the outer fit's own callback
        def on_epoch_end(self, epoch, logs=None):
            _mlp().fit(x[:200], y[:200], epochs=1, batch_size=100, verbose=0, callbacks=[green])

    _mlp().fit(x, y, epochs=2, batch_size=200, verbose=0, callbacks=[green, Probe()])
    warnings = [r.getMessage() for r in caplog.records if "given to a fit started inside the fit" in r.getMessage()]
    assert len(warnings) == 1, warnings  # it was silent: the outer run ended FAILED although its training succeeded


def test_two_callbacks_evaluating_in_one_run_keep_its_running_totals(mlflow_experiment: str, digits, tmp_path: Path) -> None:
    """Two callbacks in a run of the user's (two models, a GAN's halves): both fit, then each evaluates. Each evaluation
    goes on from the run's latest total, whichever callback logged it (the second went back to its own: 52.7 J, then
    29.0 J), and the report counts every evaluation's samples and energy (it held the last callback's alone)."""
    x, y, xv, yv = digits
    first, second, model, client = _green(), _green(), _mlp(), MlflowClient()
    with mlflow.start_run() as run:
        model.fit(x, y, epochs=1, batch_size=200, verbose=0, callbacks=[first])
        model.fit(x, y, epochs=1, batch_size=200, verbose=0, callbacks=[second])
        model.evaluate(xv[:100], yv[:100], verbose=0, callbacks=[first])
        model.evaluate(xv[:150], yv[:150], verbose=0, callbacks=[second])
        model.evaluate(xv[:50], yv[:50], verbose=0, callbacks=[first])
        model.predict(xv[:70], verbose=0, callbacks=[second])
    test_key = schema.phase_energy_key("test")
    points = sorted(client.get_metric_history(run.info.run_id, test_key), key=lambda p: p.step)
    values = [p.value * J_PER_KWH for p in points]
    per_sample = {p.step: p.value for p in client.get_metric_history(run.info.run_id, schema.phase_energy_per_sample_key("test"))}
    assert len(points) == 3 and values == sorted(values), values  # one running total, never going back
    evaluated = [100, 150, 50]
    for i, (point, samples) in enumerate(zip(points, evaluated)):  # each point: the one before plus this evaluation
        assert point.value * J_PER_KWH == pytest.approx((values[i - 1] if i else 0.0) + per_sample[point.step] * samples, rel=1e-6)
    report = _report(client, run.info.run_id, tmp_path)
    assert report["samples"] == {"train": 2 * len(x), "test": 300, "predict": 70}
    assert report["phases"]["test"]["energy_j"] == pytest.approx(values[-1], rel=1e-6)
    assert "predict" in report["phases"]
    assert_green_invariants(run.info.run_id)


def test_a_copy_of_the_callback_evaluating_beside_it_keeps_the_runs_running_total(mlflow_experiment: str, digits) -> None:
    """``copy.deepcopy(cb)`` (a clone, a snapshot) evaluating in the same run as the original: the copy is another
    callback — each goes on from the other's total (the copy took the original's identity: the total went back, and two
    points fell at one step)."""
    import copy

    x, y, xv, yv = digits
    green, model, client = _green(), _mlp(), MlflowClient()
    with mlflow.start_run() as run:
        model.fit(x, y, epochs=1, batch_size=200, verbose=0, callbacks=[green])
        twin = copy.deepcopy(green)
        model.evaluate(xv[:100], yv[:100], verbose=0, callbacks=[green])
        model.evaluate(xv[:200], yv[:200], verbose=0, callbacks=[twin])
        model.evaluate(xv[:50], yv[:50], verbose=0, callbacks=[green])
    points = sorted(client.get_metric_history(run.info.run_id, schema.phase_energy_key("test")), key=lambda p: p.step)
    assert len({p.step for p in points}) == len(points) == 3
    assert [p.value for p in points] == sorted(p.value for p in points), points
    assert_green_invariants(run.info.run_id)


def test_evaluations_back_in_the_users_run_after_a_nested_run_go_on_from_its_totals(mlflow_experiment: str, digits,
                                                                                      tmp_path: Path) -> None:
    """fit -> evaluate in the user's run U -> evaluate in a nested run of U -> evaluate in U again: U's report counts
    both of its evaluations (it held the last one's samples alone), its total going on."""
    x, y, xv, yv = digits
    green, model, client = _green(), _mlp(), MlflowClient()
    model.fit(x, y, epochs=1, batch_size=200, verbose=0, callbacks=[green])
    with mlflow.start_run() as users:
        model.evaluate(xv[:100], yv[:100], verbose=0, callbacks=[green])
        with mlflow.start_run(nested=True) as child:
            model.evaluate(xv[:60], yv[:60], verbose=0, callbacks=[green])
        model.evaluate(xv[:150], yv[:150], verbose=0, callbacks=[green])
    assert _report(client, users.info.run_id, tmp_path / "u")["samples"] == {"test": 250}
    assert _report(client, child.info.run_id, tmp_path / "c")["samples"] == {"test": 60}
    points = sorted(client.get_metric_history(users.info.run_id, schema.phase_energy_key("test")), key=lambda p: p.step)
    assert len(points) == 2 and points[0].value < points[1].value


def test_a_second_fit_in_the_run_keeps_the_evaluations_running_totals_once(mlflow_experiment: str, digits,
                                                                           tmp_path: Path) -> None:
    """fit → evaluate → predict → fit with one callback in one run of the user's: the second fit's report holds each
    evaluation's running total once, as its metric shows (adversarial round, stop 52: a change of that stop added the
    run's totals to the callback's own — 2× after the second fit, 4× after a third)."""
    x, y, xv, yv = digits
    green, model = _green(), _mlp()
    with mlflow.start_run() as run:
        model.fit(x, y, epochs=1, batch_size=200, verbose=0, callbacks=[green])
        model.evaluate(xv, yv, verbose=0, callbacks=[green])
        model.predict(xv, verbose=0, callbacks=[green])
        for _ in range(2):
            model.fit(x, y, epochs=1, batch_size=200, verbose=0, callbacks=[green])
    client = MlflowClient()
    metrics, report = client.get_run(run.info.run_id).data.metrics, _report(client, run.info.run_id, tmp_path)
    for kind in ("test", "predict"):
        assert report["phases"][kind]["energy_j"] == pytest.approx(metrics[schema.phase_energy_key(kind)] * J_PER_KWH)
        assert report["samples"][kind] == len(xv)
    assert report["samples"]["train"] == 3 * len(x)
    assert_green_invariants(run.info.run_id)


def test_a_fit_of_another_callback_in_a_run_holding_only_evaluations_keeps_their_samples(
        mlflow_experiment: str, digits, tmp_path: Path) -> None:
    """An ``evaluate`` by one callback, then another callback's fit in the same run: the fit's report keeps the
    evaluation's samples beside its energy (adversarial round, stop 52: they were dropped — a run holding no fit has no
    state in its report to take them from)."""
    x, y, xv, yv = digits
    model = _mlp()
    with mlflow.start_run() as run:
        model.evaluate(xv, yv, verbose=0, callbacks=[_green()])
        model.fit(x, y, epochs=1, batch_size=200, verbose=0, callbacks=[_green()])
    report = _report(MlflowClient(), run.info.run_id, tmp_path)
    assert report["samples"] == {"test": len(xv), "train": len(x)}
    assert report["phases"]["test"]["energy_j"] > 0


def test_two_callbacks_in_turn_an_evaluation_or_profile_of_the_first_goes_on_from_the_seconds_fit(
        mlflow_experiment: str, digits, tmp_path: Path) -> None:
    """Two models trained in turn in one run (a GAN's halves): a.fit, b.fit, a.evaluate, a.log_model after pruning,
    a.fit. The evaluation's report and the profile's step go on from b's fit, so a's next fit does too — totals never
    go back, one point per step (adversarial round, stop 52: a's report rolled back to its own first fit, its next fit
    went on from there — green/energy_kwh fell — and the profile logged a second point at b's step)."""
    x, y, xv, yv = digits
    first, second, a, b = _mlp(), _mlp(), _green(), _green()
    with mlflow.start_run() as run:
        first.fit(x, y, epochs=1, batch_size=200, verbose=0, callbacks=[a])
        second.fit(x, y, epochs=1, batch_size=200, verbose=0, callbacks=[b])
        first.evaluate(xv, yv, verbose=0, callbacks=[a])
        report = _report(MlflowClient(), run.info.run_id, tmp_path)
        assert report["samples"] == {"train": 2 * len(x), "test": len(xv)}
        kernel = first.layers[0].kernel
        kernel.assign(keras.ops.zeros_like(kernel))  # pruned: its non-zero parameters change
        a.log_model()
        first.fit(x, y, epochs=1, batch_size=200, verbose=0, callbacks=[a])
    hist = assert_green_invariants(run.info.run_id)  # one point per step; energy never decreasing
    assert len(hist[schema.ENERGY_KWH]) == 3
    assert [m.value for m in hist[schema.MODEL_PARAMS_NONZERO]][-2] < hist[schema.MODEL_PARAMS_NONZERO][0].value  # pruned
    assert _report(MlflowClient(), run.info.run_id, tmp_path)["samples"]["train"] == 3 * len(x)
