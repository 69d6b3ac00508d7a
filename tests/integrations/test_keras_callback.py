"""GreenCallback with real TensorFlow-backed Keras 3 on sklearn's digits, logged to a real sqlite store."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

keras = pytest.importorskip("keras")

from green_invariants import assert_green_invariants  # noqa: E402

from mlflow_green.errors import ConfigError  # noqa: E402
from mlflow_green.integrations.keras import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter, PerReadMeter  # noqa: E402


def _mlp() -> keras.Model:
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _traced_mlp(x: np.ndarray, y: np.ndarray) -> keras.Model:
    """A model whose training function is traced already: a fit's epochs of milliseconds, so no energy budget is
    checked within one (every 2 s; a first epoch tracing the function on a slow host takes longer, and the check's
    counter read would add a kilojoule of :class:`PerReadMeter`'s)."""
    model = _mlp()
    model.fit(x, y, epochs=1, batch_size=256, verbose=0)
    return model


def _history(run_id: str, key: str) -> list:
    return sorted(MlflowClient().get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))


def test_one_line_fit_logs_the_schema_per_epoch_into_its_own_run(mlflow_experiment: str, digits, tmp_path: Path) -> None:
    x, y, xv, yv = digits
    cb = GreenCallback()
    history = _mlp().fit(x, y, validation_data=(xv, yv), epochs=3, batch_size=64, callbacks=[cb], verbose=0)
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FINISHED"
    assert mlflow.active_run() is None
    metrics = run.data.metrics
    for key in (
        schema.ENERGY_KWH, schema.ENERGY_CPU_KWH, schema.ENERGY_RAM_KWH, schema.EPOCH_ENERGY_KWH, schema.POWER_W,
        schema.EMISSIONS_KG, schema.CARBON_INTENSITY_G_PER_KWH, schema.DURATION_S, schema.ENERGY_PER_SAMPLE_J,
        schema.ENERGY_TRAIN_KWH, schema.ENERGY_VALIDATION_KWH, schema.ENERGY_DATA_KWH,
        schema.PROJECTED_ENERGY_KWH, schema.PROJECTED_EMISSIONS_KG, schema.ACCURACY_PER_KWH,
    ):
        assert key in metrics, key
    for key in (schema.ENERGY_KWH, schema.EPOCH_ENERGY_KWH, schema.POWER_W, schema.ENERGY_VALIDATION_KWH):
        assert {m.step for m in _history(run.info.run_id, key)} == {0, 1, 2}, key
    energy = [m.value for m in _history(run.info.run_id, schema.ENERGY_KWH)]
    assert energy == sorted(energy) and energy[-1] > 0
    # Phases add up to the total at every step (other: setup, teardown, the callback's own work);
    # one point per step; the final projection is the actual total.
    assert_green_invariants(run.info.run_id)
    assert metrics[schema.ENERGY_OTHER_KWH] > 0
    assert metrics[schema.ENERGY_PER_SAMPLE_J] == pytest.approx(metrics[schema.ENERGY_KWH] * 3.6e6 / (3 * 1400), rel=0.05)
    final_accuracy = history.history["val_accuracy"][-1]
    assert metrics[schema.ACCURACY_PER_KWH] == pytest.approx(final_accuracy / metrics[schema.ENERGY_KWH], rel=1e-6)
    assert run.data.tags[schema.TAG_QUALITY_METRIC] == "val_accuracy"
    assert run.data.tags[schema.TAG_METERS]
    # Live feedback: the figures are in History (and so in the progress bar).
    assert len(history.history[schema.ENERGY_KWH]) == 3
    report = json.loads(Path(MlflowClient().download_artifacts(run.info.run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert report["framework"] == "keras" and report["status"] == "FINISHED"
    assert len(report["epochs"]) == 3 and report["samples"]["train"] == 3 * 1400
    assert set(report["phases"]) >= {"train", "validation", "data"}


def test_logs_into_the_users_active_run_and_continues_totals_in_a_second_fit(mlflow_experiment: str, digits) -> None:
    x, y, xv, yv = digits
    cb = GreenCallback(live_metrics=False)
    model = _mlp()
    with mlflow.start_run() as run:
        history = model.fit(x, y, epochs=2, batch_size=128, callbacks=[cb], verbose=0)
        first_total = MlflowClient().get_run(run.info.run_id).data.metrics[schema.ENERGY_KWH]
        model.fit(x, y, epochs=2, batch_size=128, callbacks=[cb], verbose=0)
        assert mlflow.active_run().info.run_id == run.info.run_id  # not ended by the callback
    assert schema.ENERGY_KWH not in history.history
    steps = {m.step for m in _history(run.info.run_id, schema.EPOCH_ENERGY_KWH)}
    assert steps == {0, 1, 2, 3}, "the second fit continues after the last step"
    assert MlflowClient().get_run(run.info.run_id).data.metrics[schema.ENERGY_KWH] > first_total


def test_autolog_in_the_same_fit_gives_one_run_and_no_key_clash(mlflow_experiment: str, digits) -> None:
    x, y, xv, yv = digits
    mlflow.keras.autolog(log_models=False, log_datasets=False)
    try:
        cb = GreenCallback()
        _mlp().fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=128, callbacks=[cb], verbose=0)
    finally:
        mlflow.keras.autolog(disable=True)
    runs = MlflowClient().search_runs([mlflow_experiment])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_id == cb.session.run_id
    assert "val_accuracy" in run.data.metrics and schema.ENERGY_KWH in run.data.metrics
    # Autolog's callback logs whatever is in `logs`; with autolog on we don't add ours there.
    assert [m.step for m in _history(run.info.run_id, schema.EPOCH_ENERGY_KWH)] == [0, 1]
    assert not any(k.startswith("green") and k not in vars(schema).values() for k in run.data.metrics)


def test_evaluate_and_predict_log_test_and_inference_energy(mlflow_experiment: str, digits) -> None:
    x, y, xv, yv = digits
    cb = GreenCallback()
    model = _mlp()
    model.fit(x, y, epochs=1, batch_size=128, callbacks=[cb], verbose=0)
    model.evaluate(xv, yv, batch_size=100, callbacks=[cb], verbose=0)
    model.predict(xv[:250], batch_size=50, callbacks=[cb], verbose=0)
    metrics = MlflowClient().get_run(cb.session.run_id).data.metrics
    assert metrics[schema.ENERGY_TEST_KWH] > 0 and metrics[schema.ENERGY_PREDICT_KWH] > 0
    assert metrics[schema.phase_energy_per_sample_key("test")] == pytest.approx(
        metrics[schema.ENERGY_TEST_KWH] * 3.6e6 / len(xv), rel=1e-6
    )
    assert metrics[schema.phase_energy_per_sample_key("predict")] == pytest.approx(
        metrics[schema.ENERGY_PREDICT_KWH] * 3.6e6 / 250, rel=1e-6
    )


def test_a_copy_taken_during_fit_never_rewrites_the_fits_run(mlflow_experiment: str, digits, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """A deepcopy of the callback at epoch 0's end (a snapshot of the callbacks, a clone), used after the fit
    for an evaluate: the copy starts afresh (its epoch-0 totals would be stale) and logs into a run of its own."""
    import copy

    x, y, xv, yv = digits
    cb, copies = GreenCallback(), []
    snapshot = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: copies.append(copy.deepcopy(cb)) if epoch == 0 else None)
    _mlp().fit(x, y, validation_data=(xv, yv), epochs=3, batch_size=128, callbacks=[cb, snapshot], verbose=0)
    fit_run = cb.session.run_id
    client = MlflowClient()
    report = Path(client.download_artifacts(fit_run, schema.REPORT_ARTIFACT, str(tmp_path / "before"))).read_text()
    metrics = client.get_run(fit_run).data.metrics
    assert "copied while it measures" in caplog.text
    [during] = copies
    assert during.session.run_id is None and during.session.carried.energy_j == 0
    _mlp().evaluate(xv, yv, batch_size=100, callbacks=[during], verbose=0)
    assert during.session.run_id not in (None, fit_run)
    assert client.get_run(during.session.run_id).data.metrics[schema.ENERGY_TEST_KWH] > 0
    assert Path(client.download_artifacts(fit_run, schema.REPORT_ARTIFACT, str(tmp_path / "after"))).read_text() == report
    assert client.get_run(fit_run).data.metrics == metrics
    assert [m.step for m in _history(fit_run, schema.ENERGY_KWH)] == [0, 1, 2]


@pytest.mark.parametrize("users_run", [False, True])
def test_a_fit_inside_another_fits_callback_gets_a_child_run(mlflow_experiment: str, digits, users_run: bool) -> None:
    """A probe model fitted with its own GreenCallback at each epoch end of an outer fit: each probe gets a child
    of the run the outer fit logs into (its own, or the user's), never a second history in that run."""
    x, y, _, _ = digits
    probes: list[GreenCallback] = []

    def probe(epoch: int, logs: dict) -> None:
        probes.append(GreenCallback(run_name=f"probe{epoch}"))
        _mlp().fit(x[:300], y[:300], epochs=2, batch_size=100, verbose=0, callbacks=[probes[-1]])
        assert mlflow.active_run().info.run_id == outer.session.run_id, "the outer run is active again"

    outer = GreenCallback(run_name="outer")
    with contextlib.ExitStack() as stack:
        user = stack.enter_context(mlflow.start_run()) if users_run else None
        _mlp().fit(x, y, epochs=2, batch_size=128, verbose=0,
                   callbacks=[outer, keras.callbacks.LambdaCallback(on_epoch_end=probe)])
        assert user is None or outer.session.run_id == user.info.run_id
    assert mlflow.active_run() is None
    client = MlflowClient()
    assert [m.step for m in _history(outer.session.run_id, schema.ENERGY_KWH)] == [0, 1]
    assert len({cb.session.run_id for cb in probes} | {outer.session.run_id}) == 3
    for cb in probes:
        run = client.get_run(cb.session.run_id)
        assert run.data.tags["mlflow.parentRunId"] == outer.session.run_id and run.info.status == "FINISHED"
        assert [m.step for m in _history(run.info.run_id, schema.ENERGY_KWH)] == [0, 1]
        assert_green_invariants(run.info.run_id)
    assert_green_invariants(outer.session.run_id)


def test_an_evaluate_failing_inside_a_callback_of_the_fit_and_caught_there_does_not_end_the_fit(
    mlflow_experiment: str, digits
) -> None:
    """A callback evaluates the model on a bad probe batch at each epoch end and tolerates the error: the step
    function it fails in is the fit's validation's too, but the fit goes on, and so does its run."""
    x, y, xv, yv = digits
    model, errors = _mlp(), []

    def probe(epoch: int, logs: dict) -> None:
        try:
            model.evaluate(xv[:64, :60], yv[:64], verbose=0)  # 60 features for a 64-input model
        except Exception as exc:  # tolerated
            errors.append(type(exc).__name__)

    cb = GreenCallback()
    model.fit(x, y, validation_data=(xv, yv), epochs=3, batch_size=128, verbose=0,
              callbacks=[cb, keras.callbacks.LambdaCallback(on_epoch_end=probe)])
    assert len(errors) == 3
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FINISHED" and schema.ENERGY_TEST_KWH not in run.data.metrics
    assert [m.step for m in _history(run.info.run_id, schema.ENERGY_KWH)] == [0, 1, 2]
    assert all(m.value > 0 for m in _history(run.info.run_id, schema.ENERGY_VALIDATION_KWH))
    assert_green_invariants(run.info.run_id)


@pytest.mark.parametrize("fit_first", [True, False])
def test_evaluations_by_new_callbacks_in_one_run_keep_one_point_per_step_and_a_running_total(
    mlflow_experiment: str, digits, fit_first: bool
) -> None:
    """A fit and an evaluate with one callback, then an evaluate with a new one, in the user's run (or two
    evaluates with two callbacks): the new callback's point goes after the run's, adding to its total."""
    x, y, xv, yv = digits
    first, second = GreenCallback(), GreenCallback()
    with mlflow.start_run() as run:
        model = _mlp()
        if fit_first:
            model.fit(x, y, epochs=2, batch_size=128, verbose=0, callbacks=[first])
        model.evaluate(xv, yv, batch_size=100, verbose=0, callbacks=[first])
        model.evaluate(xv, yv, batch_size=100, verbose=0, callbacks=[second])
    history = _history(run.info.run_id, schema.ENERGY_TEST_KWH)
    steps = [m.step for m in history]
    assert steps == ([1, 2] if fit_first else [0, 1]), steps
    assert history[0].value * 3.6e6 == pytest.approx(first.session.evals.totals["test"].energy_j, rel=1e-9)
    # the second callback's total: the first's, plus its own evaluation
    assert history[1].value * 3.6e6 == pytest.approx(second.session.evals.totals["test"].energy_j, rel=1e-9)
    assert history[1].value > history[0].value
    per_sample = [m.step for m in _history(run.info.run_id, schema.phase_energy_per_sample_key("test"))]
    assert per_sample == steps


def test_energy_budget_stops_training_cleanly_and_tags_the_reason(mlflow_experiment: str, digits) -> None:
    x, y, _, _ = digits
    # Each counter read adds 1 kJ. Reads: fit start, then begin/end of each epoch. After epoch 1
    # 2 kJ are used and an epoch costs ~1 kJ; a 2.5 kJ budget cannot afford another epoch.
    budget_kwh = 2500 / 3.6e6
    cb = GreenCallback(meters=[PerReadMeter(1000.0)], max_energy_kwh=budget_kwh)
    history = _traced_mlp(x, y).fit(x, y, epochs=5, batch_size=256, callbacks=[cb], verbose=0)
    assert len(history.history["loss"]) == 1
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FINISHED"
    assert "energy budget" in run.data.tags[schema.TAG_BUDGET_STOP]
    assert "next epoch" in run.data.tags[schema.TAG_BUDGET_STOP]
    # The decision was taken at the epoch end, within the budget: 2 kJ used (the end-of-fit read
    # adds one more to the final total, logged once at the same step).
    assert "0.0005556 kWh used" in run.data.tags[schema.TAG_BUDGET_STOP]
    [at_stop] = _history(run.info.run_id, schema.ENERGY_KWH)
    assert at_stop.step == 0 and at_stop.value == pytest.approx(3000 / 3.6e6)


@pytest.mark.parametrize("initial_epoch", [0, 4], ids=["one-epoch-fit", "last-of-five"])
def test_a_budget_that_would_not_afford_a_next_epoch_says_nothing_when_none_is_planned(
        initial_epoch: int, mlflow_experiment: str, digits, caplog: pytest.LogCaptureFixture) -> None:
    x, y, _, _ = digits
    cb = GreenCallback(meters=[PerReadMeter(1000.0)], max_energy_kwh=2500 / 3.6e6)  # as above: no second epoch affordable
    with caplog.at_level("WARNING", logger="mlflow_green"):
        history = _traced_mlp(x, y).fit(x, y, epochs=initial_epoch + 1, initial_epoch=initial_epoch, batch_size=256, callbacks=[cb],
                             verbose=0)
    assert len(history.history["loss"]) == 1  # every planned epoch ran: the budget stopped nothing
    assert schema.TAG_BUDGET_STOP not in MlflowClient().get_run(cb.session.run_id).data.tags
    assert not [r for r in caplog.records if "stopping training" in r.getMessage()]


def test_an_exhausted_budget_stops_after_the_epoch(mlflow_experiment: str, digits) -> None:
    x, y, _, _ = digits
    cb = GreenCallback(meters=[PerReadMeter(1000.0)], max_emissions_kg=1e-9)
    history = _mlp().fit(x, y, epochs=5, batch_size=256, callbacks=[cb], verbose=0)
    assert len(history.history["loss"]) == 1
    assert "budget exhausted" in MlflowClient().get_run(cb.session.run_id).data.tags[schema.TAG_BUDGET_STOP]


class _FailingData(keras.utils.PyDataset):
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__()
        self.x, self.y, self.batches = x, y, 0

    def __len__(self) -> int:
        return 5

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        self.batches += 1
        if self.batches > 7:  # fails during the second epoch
            raise RuntimeError("corrupt shard")
        return self.x[index * 64 : (index + 1) * 64], self.y[index * 64 : (index + 1) * 64]


def test_an_exception_inside_fit_leaves_the_run_failed_with_the_energy_so_far(mlflow_experiment: str, digits) -> None:
    x, y, _, _ = digits
    cb = GreenCallback()
    with pytest.raises(Exception, match="corrupt shard"):
        _mlp().fit(_FailingData(x, y), epochs=3, callbacks=[cb], verbose=0)
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FAILED"
    assert run.data.metrics[schema.ENERGY_KWH] > 0
    assert mlflow.active_run() is None


def test_bad_options_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match="max_energy_kwh"):
        GreenCallback(max_energy_kwh=-1)
    with pytest.raises(ConfigError, match="samples_per_epoch"):
        GreenCallback(samples_per_epoch=0)
    with pytest.raises(ConfigError, match="PUE"):
        GreenCallback(pue=0.2)


class _ZeroHalfAtEpochEnd(keras.callbacks.Callback):
    """Prunes during training: zeroes the first half of every Dense kernel's columns after epoch 0."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for layer in self.model.layers:
            if isinstance(layer, keras.layers.Dense):
                kernel = keras.ops.convert_to_numpy(layer.kernel).copy()
                kernel[:, : kernel.shape[1] // 2] = 0.0
                layer.kernel.assign(kernel)


def test_model_metadata_is_logged_at_begin_and_again_when_training_pruned_it(mlflow_experiment: str, digits) -> None:
    x, y, xv, yv = digits
    cb = GreenCallback()
    model = _mlp()
    # Run the pruning callback after GreenCallback's epoch end: GreenCallback sees the change at train end.
    model.fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=128, callbacks=[cb, _ZeroHalfAtEpochEnd()], verbose=0)
    run_id = cb.session.run_id
    params = 64 * 32 + 32 + 32 * 10 + 10
    run = MlflowClient().get_run(run_id)
    assert run.data.metrics[schema.MODEL_PARAMS] == params
    sparsity = _history(run_id, schema.MODEL_SPARSITY)
    assert [round(m.value, 2) for m in sparsity] == [0.0, 0.5]
    assert [m.step for m in sparsity] == [0, 1]
    assert run.data.metrics[schema.MODEL_STRUCTURED_SPARSITY] == pytest.approx(0.5, abs=0.01)
    assert run.data.tags[schema.TAG_COMPRESSION] == "pruned"
    # Achieved FLOP/J from the inspected forward FLOPs and the samples trained and validated.
    flops = run.data.metrics[schema.MODEL_FLOPS_PER_SAMPLE]
    expected = (3 * flops * 2 * len(x) + flops * 2 * len(xv)) / (run.data.metrics[schema.ENERGY_KWH] * 3.6e6)
    assert run.data.metrics[schema.FLOP_PER_J] == pytest.approx(expected, rel=1e-6)


class _PruneMoreEachEpoch(keras.callbacks.Callback):
    """A pruning schedule: after epoch e, the first (e + 1) quarters of every Dense kernel's columns are zero; then
    ``green.log_model()`` logs the change at the epoch's step (docs/keras.md, "Model inspection")."""

    def __init__(self, green: GreenCallback) -> None:
        super().__init__()
        self.green = green

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for layer in self.model.layers:
            if isinstance(layer, keras.layers.Dense):
                kernel = keras.ops.convert_to_numpy(layer.kernel).copy()
                kernel[:, : kernel.shape[1] * (epoch + 1) // 4] = 0.0
                layer.kernel.assign(kernel)
        self.green.log_model()


def test_a_pruning_schedule_logs_each_epochs_sparsity_at_its_step_through_log_model(mlflow_experiment: str, digits) -> None:
    x, y, xv, yv = digits
    cb = GreenCallback()
    _mlp().fit(x, y, validation_data=(xv, yv), epochs=3, batch_size=128, callbacks=[cb, _PruneMoreEachEpoch(cb)], verbose=0)
    run_id = cb.session.run_id
    # Dense(64, 32): 8, 16, 24 of 32 columns; Dense(32, 10): 2, 5, 7 of 10 — of 2 368 kernel weights
    expected = [(64 * 8 + 32 * 2) / 2368, (64 * 16 + 32 * 5) / 2368, (64 * 24 + 32 * 7) / 2368]
    sparsity = _history(run_id, schema.MODEL_SPARSITY)
    assert [m.step for m in sparsity] == [0, 1, 2]
    assert [m.value for m in sparsity] == pytest.approx(expected, abs=1e-4), [m.value for m in sparsity]
    assert_green_invariants(run_id)


def test_post_training_quantization_is_logged_into_the_same_run_at_a_new_step(mlflow_experiment: str, digits, tmp_path: Path) -> None:
    import warnings

    x, y, _, _ = digits
    cb = GreenCallback()
    model = _mlp()
    model.fit(x, y, epochs=2, batch_size=128, callbacks=[cb], verbose=0)
    size_before = MlflowClient().get_run(cb.session.run_id).data.metrics[schema.MODEL_SIZE_BYTES]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.quantize("int8")
    profile = cb.log_model()
    run = MlflowClient().get_run(cb.session.run_id)
    assert profile is not None and profile.quantization == "int8"
    assert run.data.tags[schema.TAG_COMPRESSION] == "int8"
    assert run.data.metrics[schema.MODEL_SIZE_BYTES] < size_before / 3
    # the values before (step 0) and after quantization (a new step after the last epoch's)
    assert [m.step for m in _history(run.info.run_id, schema.MODEL_SIZE_BYTES)] == [0, 2]
    assert [m.step for m in _history(run.info.run_id, schema.MODEL_WEIGHT_BITS)] == [0, 2]
    assert [m.step for m in _history(run.info.run_id, schema.MODEL_PARAMS)] == [0], "unchanged values are not logged again"
    report = json.loads(Path(MlflowClient().download_artifacts(run.info.run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert report["model"]["quantization"] == "int8"
    assert report["model"]["size_bytes"] == run.data.metrics[schema.MODEL_SIZE_BYTES]


@pytest.mark.parametrize(
    ("make_dataset", "fit_kwargs", "samples"),
    [
        (lambda ds: ds.batch(32), {}, 2 * 1400),  # last batch of 24, size unknown to Keras
        (lambda ds: ds.shuffle(256).batch(32).repeat(), {"steps_per_epoch": 10}, 2 * 10 * 32),
    ],
    ids=["batch-without-drop-remainder", "repeat-with-steps-per-epoch"],
)
def test_tf_data_of_unknown_length_still_counts_the_samples_seen(make_dataset, fit_kwargs, samples, mlflow_experiment: str, digits, tmp_path: Path) -> None:
    import tensorflow as tf

    x, y, _, _ = digits
    cb = GreenCallback()
    _mlp().fit(make_dataset(tf.data.Dataset.from_tensor_slices((x, y))), epochs=2, callbacks=[cb], verbose=0, **fit_kwargs)
    metrics = MlflowClient().get_run(cb.session.run_id).data.metrics
    assert metrics[schema.ENERGY_PER_SAMPLE_J] == pytest.approx(metrics[schema.ENERGY_KWH] * 3.6e6 / samples, rel=1e-9)
    assert metrics[schema.FLOP_PER_J] > 0
    report = json.loads(Path(MlflowClient().download_artifacts(cb.session.run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert report["samples"]["train"] == samples


def test_runs_logged_only_by_the_callback_rank_by_their_quality_metric(mlflow_experiment: str, digits) -> None:
    import mlflow_green

    x, y, xv, yv = digits
    cb = GreenCallback()
    history = _mlp().fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=128, callbacks=[cb], verbose=0)
    metrics = MlflowClient().get_run(cb.session.run_id).data.metrics
    assert metrics[schema.QUALITY] == pytest.approx(history.history["val_accuracy"][-1])
    [row] = mlflow_green.rank([mlflow_experiment]).rows
    assert row.rank == 1 and row.quality_metric == "val_accuracy"
    assert row.accuracy_per_kwh == pytest.approx(metrics[schema.ACCURACY_PER_KWH], rel=1e-6)


def test_projection_leaves_out_the_compilation_epoch_and_ends_at_the_actual_total(mlflow_experiment: str, digits) -> None:
    x, y, _, _ = digits
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})])  # energy proportional to time
    stop = keras.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=2)  # stops after epoch 2 of 6
    _mlp().fit(x, y, epochs=6, batch_size=64, callbacks=[cb, stop], verbose=0)
    run_id = cb.session.run_id
    epoch_j = [m.value * 3.6e6 for m in _history(run_id, schema.EPOCH_ENERGY_KWH)]
    energy = _history(run_id, schema.ENERGY_KWH)
    projected = _history(run_id, schema.PROJECTED_ENERGY_KWH)
    assert len(epoch_j) == 3 and epoch_j[0] > 1.5 * epoch_j[1], "epoch 0 traces the graph: an outlier"
    # after epoch 1, the 4 remaining epochs cost what epoch 1 did, the work since epoch 0's end included
    # (epoch 0 is not steady state)
    assert projected[1].value == pytest.approx(energy[1].value + 4 * (energy[1].value - energy[0].value), rel=1e-9)
    # the early stop: the last projection is the actual total, not the 6-epoch plan
    assert projected[-1].step == 2 and projected[-1].value == pytest.approx(energy[-1].value, rel=1e-12)
    assert_green_invariants(run_id)


class _SlowCheckpoint(keras.callbacks.Callback):
    """Another callback's recurring work after each epoch's end (a checkpoint written): 0.3 s."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import time

        time.sleep(0.3)


def test_projection_counts_the_work_between_epochs_that_recurs(mlflow_experiment: str, digits) -> None:
    """A checkpoint after every epoch is part of what each remaining epoch costs: the forecast after
    epoch 2 of 5 is the total plus two more epochs *with* the checkpoints before them, and the checkpoint
    after the last one (it was one short: the forecast fell 0.3 s × 100 W short of the final total)."""
    x, y, _, _ = digits
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})])  # energy proportional to time
    _mlp().fit(x, y, epochs=5, batch_size=64, callbacks=[cb, _SlowCheckpoint()], verbose=0)
    run_id = cb.session.run_id
    epoch_kwh = [m.value for m in _history(run_id, schema.EPOCH_ENERGY_KWH)]
    energy = [m.value for m in _history(run_id, schema.ENERGY_KWH)]
    projected = [m.value for m in _history(run_id, schema.PROJECTED_ENERGY_KWH)]
    growth = energy[2] - energy[1]
    assert growth > epoch_kwh[2] + 0.25 * 100 / 3.6e6, "the checkpoint's 0.3 s is between epochs 1 and 2"
    # the rate: the later epochs' growth (epoch 0's window, without a checkpoint before it, is left out)
    rate = (energy[1] - energy[0] + growth) / 2
    between = rate - (epoch_kwh[1] + epoch_kwh[2]) / 2  # the mean work between two epochs: the checkpoint's
    assert projected[2] == pytest.approx(energy[2] + 2 * rate + between, rel=1e-9)
    # each remaining epoch is forecast with its checkpoint (0.3 s at 100 W), as each then cost: the epoch's window
    # alone would fall short by both checkpoints (how close the forecast comes depends on the machine's load)
    checkpoint_kwh = 0.25 * 100 / 3.6e6
    assert projected[2] - energy[2] > 2 * (min(epoch_kwh[1:3]) + checkpoint_kwh) + checkpoint_kwh
    assert energy[-1] - energy[2] > 2 * (min(epoch_kwh[3:5]) + checkpoint_kwh)
    assert energy[2] + 2 * epoch_kwh[2] < energy[-1] - 0.5 * 2 * 0.3 * 100 / 3.6e6
    assert projected[-1] == pytest.approx(energy[-1], rel=1e-12)
    assert_green_invariants(run_id)


def test_meters_are_read_twice_an_epoch_with_validation_and_a_slow_epoch_end_is_measured(
    mlflow_experiment: str, digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The epoch's end reading closes the validation too; the next epoch starts there unless more than
    EPOCH_GAP_S passed (here a callback that takes 10 × EPOCH_GAP_S after epoch 1: that gap is read, and is
    `other`). EPOCH_GAP_S is widened to 50 ms so that a loaded CI machine's pauses do not add reads."""
    import time

    from mlflow_green.training import session_windows

    monkeypatch.setattr(session_windows, "EPOCH_GAP_S", 0.05)
    EPOCH_GAP_S = session_windows.EPOCH_GAP_S

    x, y, xv, yv = digits
    meter = FakeMeter({"cpu:0": 50.0})
    reads_at_end: list[int] = []

    class SlowAfterEpochOne(keras.callbacks.Callback):  # placed after GreenCallback
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            reads_at_end.append(meter.reads)
            if epoch == 1:
                time.sleep(10 * EPOCH_GAP_S)

    cb = GreenCallback(meters=[meter], live_metrics=False)
    _mlp().fit(x, y, validation_data=(xv, yv), epochs=4, batch_size=128, callbacks=[cb, SlowAfterEpochOne()], verbose=0)
    per_epoch = [b - a for a, b in zip(reads_at_end, reads_at_end[1:])]
    # validation start + epoch end; + the epoch's start after the slow gap. Any stretch over EPOCH_GAP_S is
    # read (on a loaded machine the epoch thread or a garbage collection can hold the GIL that long between
    # two epochs): an epoch may then read once more, but the slow gap is always read
    assert per_epoch[1] >= 3 and 2 in (per_epoch[0], per_epoch[2]) and max(per_epoch) <= 4, per_epoch
    run_id = cb.session.run_id
    assert_green_invariants(run_id)
    other_j = [m.value * 3.6e6 for m in _history(run_id, schema.ENERGY_OTHER_KWH)]
    gap_j = 50.0 * 10 * EPOCH_GAP_S
    assert other_j[2] - other_j[1] >= 0.9 * gap_j  # the 50 ms after epoch 1, read by the meter, is other
    assert other_j[1] - other_j[0] < 0.5 * gap_j and other_j[3] - other_j[2] < 0.5 * gap_j


def test_a_quality_metric_the_fit_never_logs_is_reported_not_silently_unused(
    mlflow_experiment: str, digits, caplog: pytest.LogCaptureFixture
) -> None:
    x, y, xv, yv = digits
    cb = GreenCallback(quality_metric="val_f1", live_metrics=False)
    _mlp().fit(x, y, validation_data=(xv, yv), epochs=1, batch_size=256, callbacks=[cb], verbose=0)
    [warning] = [r.getMessage() for r in caplog.records if "quality_metric='val_f1'" in r.getMessage()]
    assert "val_accuracy" in warning and "green/accuracy_per_kwh is not logged" in warning
    assert schema.ACCURACY_PER_KWH not in MlflowClient().get_run(cb.session.run_id).data.metrics


def test_work_of_a_callback_before_ours_at_the_epoch_end_is_other_not_validation(mlflow_experiment: str, digits) -> None:
    """[ModelCheckpoint(...), GreenCallback()]: the other callback's on_epoch_end runs between our validation's
    end and our epoch end (found by an adversarial probe: it was billed as validation)."""
    import time

    class SlowEpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            time.sleep(0.2)

    class ValidationClock(keras.callbacks.Callback):  # called right before ours: the validations' own wall time
        validating_s = 0.0

        def on_test_begin(self, logs: dict | None = None) -> None:
            self.began_s = time.perf_counter()

        def on_test_end(self, logs: dict | None = None) -> None:
            self.validating_s += time.perf_counter() - self.began_s

    x, y, xv, yv = digits
    clock = ValidationClock()
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0, "ram:0": 0.0})], live_metrics=False)
    _mlp().fit(x, y, validation_data=(xv, yv), epochs=3, batch_size=128, callbacks=[SlowEpochEnd(), clock, cb], verbose=0)
    metrics = MlflowClient().get_run(cb.session.run_id).data.metrics
    validation_j, train_j, other_j = (metrics[k] * 3.6e6 for k in (
        schema.ENERGY_VALIDATION_KWH, schema.ENERGY_TRAIN_KWH, schema.ENERGY_OTHER_KWH))
    assert other_j >= 100.0 * 3 * 0.2 * 0.95, (validation_j, train_j, other_j)  # the three sleeps, at 100 W
    # the validations themselves at 100 W, and 20 ms an epoch to spare (the hooks between the clock's and ours);
    # billed the sleeps too, validation would hold 60 J more (load on the host makes validations longer, not this margin)
    assert validation_j <= 100.0 * (clock.validating_s + 3 * 0.02), (validation_j, clock.validating_s, other_j)
    assert_green_invariants(cb.session.run_id)


def test_work_of_a_callback_before_ours_at_the_end_of_an_epoch_without_validation_is_other(
    mlflow_experiment: str, digits
) -> None:
    """[ModelCheckpoint(...), GreenCallback()] with no validation: the checkpoint is written after the epoch's
    last step and before our epoch end — a reading as Keras's epoch-end hooks begin makes it `other`, not train
    (it was inside the epoch's window, billed to training)."""
    import time

    class SlowEpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            time.sleep(0.2)

    class TrainingClock(keras.callbacks.Callback):  # the epochs' training, from their start to their last step
        training_s = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.began_s = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.training_s += time.perf_counter() - self.began_s

    x, y, _, _ = digits
    clock = TrainingClock()
    meter = FakeMeter({"cpu:0": 100.0, "ram:0": 0.0})
    cb = GreenCallback(meters=[meter], live_metrics=False)
    reads: list[int] = []

    class Reads(keras.callbacks.Callback):  # after ours: the meter's reads at each epoch end
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            reads.append(meter.reads)

    _mlp().fit(x, y, epochs=3, batch_size=128, callbacks=[clock, SlowEpochEnd(), cb, Reads()], verbose=0)
    metrics = MlflowClient().get_run(cb.session.run_id).data.metrics
    train_j, data_j, other_j = (metrics[k] * 3.6e6 for k in (schema.ENERGY_TRAIN_KWH, schema.ENERGY_DATA_KWH,
                                                             schema.ENERGY_OTHER_KWH))
    assert other_j >= 100.0 * 3 * 0.2 * 0.95, (train_j, other_j)  # the three checkpoints, at 100 W
    assert train_j + data_j <= 100.0 * (clock.training_s + 3 * 0.02), (train_j, data_j, clock.training_s, other_j)
    # a reading as training ends, one after the checkpoint (one more where a loaded host delays the next epoch's start)
    assert all(2 <= b - a <= 3 for a, b in zip(reads, reads[1:])), reads
    assert_green_invariants(cb.session.run_id)


def test_a_fit_that_fails_in_its_first_validation_logs_every_phase(mlflow_experiment: str, digits) -> None:
    """The energy of a failed first epoch is other, and train, validation and data are there at 0 (the
    four add up at every step; found by an adversarial probe: only other was logged)."""

    class Broken(keras.callbacks.Callback):
        def on_test_end(self, logs: dict | None = None) -> None:
            raise RuntimeError("cannot write the checkpoint")

    x, y, xv, yv = digits
    cb = GreenCallback(live_metrics=False)
    with pytest.raises(RuntimeError, match="cannot write"):
        _mlp().fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=256, callbacks=[cb, Broken()], verbose=0)
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FAILED"
    assert_green_invariants(run.info.run_id)
    assert run.data.metrics[schema.ENERGY_OTHER_KWH] > 0


def test_a_callback_list_made_without_params_is_measured_like_a_list(mlflow_experiment: str, digits) -> None:
    """``fit(callbacks=CallbackList([...], model=m))`` without ``epochs=``: Keras passes the list on as it is, so our
    ``params`` is None (found by an adversarial probe: AttributeError into fit, the run left RUNNING and active, the
    next fit logging into it)."""
    x, y, xv, yv = digits
    cb, model = GreenCallback(), _mlp()
    callbacks = keras.callbacks.CallbackList([cb, keras.callbacks.History()], model=model)
    model.fit(x, y, validation_data=(xv, yv), epochs=3, batch_size=128, callbacks=callbacks, verbose=0)
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FINISHED" and mlflow.active_run() is None
    # the projection knew the 3 epochs from fit's own arguments: at epoch 0, about 3 epochs' energy
    projected = _history(cb.session.run_id, schema.PROJECTED_ENERGY_KWH)
    energy = _history(cb.session.run_id, schema.ENERGY_KWH)
    assert [m.step for m in energy] == [0, 1, 2] and projected[0].value > 2 * energy[0].value
    assert_green_invariants(cb.session.run_id)


def _unbuilt() -> keras.Model:  # no keras.Input: TensorFlow builds it in the first training step
    model = keras.Sequential([keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("fails_in_first_epoch", [False, True])
def test_a_model_built_in_its_first_step_is_profiled_once_built(fails_in_first_epoch: bool, mlflow_experiment: str,
                                                                  digits) -> None:
    """A Sequential without keras.Input (a subclassed model alike) has no variables at on_train_begin on TensorFlow
    (found by an adversarial probe: green/model_params 0 at step 0, and a failed run had no FLOP/J)."""
    x, y, xv, yv = digits
    cb = GreenCallback()

    class FailsAtBatch3(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if batch == 3:
                raise RuntimeError("loss exploded")

    callbacks = [cb, FailsAtBatch3()] if fails_in_first_epoch else [cb]
    with pytest.raises(RuntimeError) if fails_in_first_epoch else contextlib.nullcontext():
        _unbuilt().fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=128, callbacks=callbacks, verbose=0)
    run_id = cb.session.run_id
    params = 64 * 16 + 16 + 16 * 10 + 10
    assert [(m.step, m.value) for m in _history(run_id, schema.MODEL_PARAMS)] == [(0, params)]
    metrics = MlflowClient().get_run(run_id).data.metrics
    assert metrics[schema.MODEL_FLOPS_PER_SAMPLE] == 2 * (64 * 16 + 16 * 10) + 16 + 10
    assert metrics[schema.FLOP_PER_J] > 0
    assert MlflowClient().get_run(run_id).info.status == ("FAILED" if fails_in_first_epoch else "FINISHED")
    assert_green_invariants(run_id)


@pytest.mark.parametrize("source", ["generator", "pydataset", "tf.data"])
def test_predict_on_input_of_unknown_size_counts_what_it_predicted(source: str, mlflow_experiment: str, digits) -> None:
    """TensorFlow reads predict's input inside the step: the samples are those of the outputs (found by an adversarial
    probe: no green/energy_per_sample_predict_j and no predict samples for a generator, a PyDataset, tf.data)."""
    import tensorflow as tf

    x = digits[0][:230]

    class Batches(keras.utils.PyDataset):
        def __len__(self) -> int:
            return 5

        def __getitem__(self, i: int) -> tuple:
            return (x[i * 50 : (i + 1) * 50],)

    inputs = {"generator": lambda: ((x[i : i + 50],) for i in range(0, 230, 50)), "pydataset": Batches,
              "tf.data": lambda: tf.data.Dataset.from_tensor_slices(x).batch(50)}[source]()
    cb, model = GreenCallback(), _mlp()
    predicted = model.predict(inputs, verbose=0, callbacks=[cb])
    assert len(predicted) == 230
    metrics = MlflowClient().get_run(cb.session.run_id).data.metrics
    assert metrics[schema.phase_energy_per_sample_key("predict")] == pytest.approx(
        metrics[schema.ENERGY_PREDICT_KWH] * 3.6e6 / 230, rel=1e-6)


def test_two_callbacks_training_in_turn_in_one_run_continue_each_others_totals(mlflow_experiment: str, digits, tmp_path: Path) -> None:
    """GAN-style turns in the user's run — A, B, A, B, one epoch each (found by an adversarial probe: steps
    [0, 1, 1, 2], the total going down, one fit's energy lost: a reused callback went on from its own totals)."""
    x, y, _, _ = digits
    (a, cb_a), (b, cb_b) = (_mlp(), GreenCallback()), (_mlp(), GreenCallback())
    with mlflow.start_run() as run:
        for model, cb in ((a, cb_a), (b, cb_b), (a, cb_a), (b, cb_b)):
            model.fit(x, y, epochs=1, batch_size=128, callbacks=[cb], verbose=0)
    energy = _history(run.info.run_id, schema.ENERGY_KWH)
    assert [m.step for m in energy] == [0, 1, 2, 3]
    assert all(later.value > earlier.value for earlier, later in zip(energy, energy[1:]))
    report = json.loads(Path(MlflowClient().download_artifacts(run.info.run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert report["samples"] == {"train": 4 * len(x)}
    assert_green_invariants(run.info.run_id)


def _own_loop(cb: GreenCallback, epochs: int = 2) -> tuple[keras.Model, int]:
    """The custom-loop pattern of TensorFlow's guides: a CallbackList driven by hand, train_on_batch per batch."""
    x, y = np.random.default_rng(0).random((256, 16)).astype("float32"), np.random.default_rng(1).integers(0, 4, 256)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(4)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    callbacks = keras.callbacks.CallbackList([cb], add_history=True, model=model, epochs=epochs, steps=4)
    callbacks.on_train_begin()
    logs: dict = {}
    for epoch in range(epochs):
        callbacks.on_epoch_begin(epoch)
        for step in range(4):
            callbacks.on_train_batch_begin(step)
            logs = model.train_on_batch(x[step * 64:(step + 1) * 64], y[step * 64:(step + 1) * 64], return_dict=True)
            callbacks.on_train_batch_end(step, logs)
        callbacks.on_epoch_end(epoch, logs)
    callbacks.on_train_end(logs)
    return model, 256 * epochs


def test_a_loop_of_the_users_own_logs_no_per_sample_figures_unless_told_the_samples(
        mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    """train_on_batch resets the metrics at every call: the count Keras's fit leaves was one batch an epoch
    (joules per sample 4x high here, 8x in the report that found it). Now left out, with a warning that says
    what to pass; with ``samples_per_epoch`` the figures are there."""
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 10.0})])
    with caplog.at_level("WARNING", logger="mlflow_green"):
        _own_loop(cb)
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FINISHED"
    assert schema.ENERGY_PER_SAMPLE_J not in run.data.metrics and schema.FLOP_PER_J not in run.data.metrics
    assert any("a training loop of your own" in r.getMessage() and "samples_per_epoch" in r.getMessage()
               for r in caplog.records)
    told = GreenCallback(meters=[FakeMeter({"cpu:0": 10.0})], samples_per_epoch=256)
    _, trained = _own_loop(told)
    metrics = MlflowClient().get_run(told.session.run_id).data.metrics
    assert metrics[schema.ENERGY_PER_SAMPLE_J] == pytest.approx(metrics[schema.ENERGY_KWH] * 3.6e6 / trained, rel=1e-6)


def test_a_fit_whose_samples_cannot_be_counted_says_so(mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    """Keras's guide's lower-level train_step (compile without a loss, a Mean tracker of its own) on tf.data: no
    count anywhere, and the per-sample figures were left out without a word. Now a warning names the option."""
    tf = pytest.importorskip("tensorflow")

    class OwnTrackerModel(keras.Model):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.loss_tracker = keras.metrics.Mean(name="loss")

        @property
        def metrics(self) -> list:
            return [self.loss_tracker]

        def train_step(self, data: tuple) -> dict:
            x, y = data
            with tf.GradientTape() as tape:
                loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, self(x, training=True)))
            self.optimizer.apply(tape.gradient(loss, self.trainable_variables), self.trainable_variables)
            self.loss_tracker.update_state(loss)
            return {"loss": self.loss_tracker.result()}

    x, y = np.random.default_rng(0).random((256, 16)).astype("float32"), np.random.default_rng(1).integers(0, 4, 256)
    inputs = keras.Input((16,))
    model = OwnTrackerModel(inputs, keras.layers.Dense(4, activation="softmax")(inputs))
    model.compile(optimizer="sgd")
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 10.0})])
    with caplog.at_level("WARNING", logger="mlflow_green"):
        model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(64), epochs=2, callbacks=[cb], verbose=0)
    assert schema.ENERGY_PER_SAMPLE_J not in MlflowClient().get_run(cb.session.run_id).data.metrics
    assert any("samples OwnTrackerModel trained in this fit are not known" in r.getMessage() and "samples_per_epoch"
               in r.getMessage() for r in caplog.records)


def test_a_callback_that_takes_no_attributes_is_not_a_reason_to_fail_the_fit(mlflow_experiment: str, digits) -> None:
    """The guard watches another callback's own batch hooks by wrapping them on it; one whose ``__setattr__``
    refuses (frozen after construction) keeps its hooks, the fit trains, and its error still ends our run."""
    x, y, _, _ = digits

    class Frozen(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.ends = 0
            self._frozen = True

        def __setattr__(self, name: str, value: object) -> None:
            if getattr(self, "_frozen", False) and name.startswith("on_"):
                raise AttributeError(f"{type(self).__name__} is frozen")
            super().__setattr__(name, value)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.ends += 1
            if self.ends == 15:
                raise RuntimeError("a frozen callback failed")

    cb, frozen = GreenCallback(meters=[FakeMeter({"cpu:0": 10.0})]), Frozen()
    with pytest.raises(RuntimeError, match="frozen callback failed"):
        _mlp().fit(x, y, epochs=3, batch_size=128, verbose=0, callbacks=[cb, frozen])
    assert frozen.ends == 15  # trained into its second epoch: the wrap's refusal did not stop the fit
    deadline = time.monotonic() + 5.0  # seen by the fit's watch within two looks
    while MlflowClient().get_run(cb.session.run_id).info.status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert MlflowClient().get_run(cb.session.run_id).info.status == "FAILED"
    assert mlflow.active_run() is None
