"""Keras ``fit`` configurations the other Keras tests do not cover, with ``GreenCallback`` on a real tiny model.

Each configuration is checked the way a user sees it in MLflow: the run's status, ``green/energy_kwh``
with one point per step (step = epoch) that never decreases, the four phases adding up to it, the final
projection equal to the final energy, ``green/energy_per_sample_j`` at every step equal to the energy
so far over the samples actually trained so far, and ``green/report.json`` (status, epochs, samples).

TensorFlow runs in this process (the suite's backend). The configurations that failed or behave
differently by backend run again on torch and JAX: Keras fixes its backend at import, so this file is
also a script — ``python test_keras_configurations.py BACKEND OUT_DIR CASE...`` runs those cases into
OUT_DIR/mlflow.db and writes what each returned to OUT_DIR/result.json; the checks run here.

Data: the 8x8 digits, 1 280 training images (20 batches of 64), 397 validation images; a 64-16-10 MLP.
The sweep that wrote this file found three configurations broken (the input running out inside the
step, two callbacks in one fit, a new callback in an earlier fit's run); their tests now pass.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # a torch / JAX run of the cases: the backend is fixed before Keras is imported
    os.environ["KERAS_BACKEND"] = sys.argv[1]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("MLFLOW_GREEN_SPOOL_DIR", str(Path(sys.argv[2]) / "spool"))

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

keras = pytest.importorskip("keras")

from green_invariants import assert_green_invariants  # noqa: E402

from mlflow_green.integrations.keras import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402

N_TRAIN, BATCH = 1280, 64  # 20 full batches an epoch
N_VAL = 397
BATCHES = N_TRAIN // BATCH
Result = dict[str, Any]
CASES: dict[str, Callable[[Path], Result]] = {}


def case(fn: Callable[[Path], Result]) -> Callable[[Path], Result]:
    CASES[fn.__name__] = fn
    return fn


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data / 16.0).astype("float32"), digits.target.astype("int64")


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = _digits()
    return x[:N_TRAIN], y[:N_TRAIN], x[1400:], y[1400:]


def _mlp(loss: Any = "sparse_categorical_crossentropy") -> keras.Model:
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile("adam", loss, metrics=["accuracy"])
    return model


def _nan_at_label_10(y_true: Any, y_pred: Any) -> Any:
    """Cross-entropy, but NaN for a sample labelled 10 (the same on every backend, no state)."""
    y_true = keras.ops.cast(y_true, "int32")
    ce = keras.losses.sparse_categorical_crossentropy(keras.ops.minimum(y_true, 9), y_pred)
    return keras.ops.where(keras.ops.reshape(y_true, keras.ops.shape(ce)) >= 10, float("nan"), ce)


class Counter(keras.callbacks.Callback):
    """The epochs Keras ran and the training batches each trained (listed first: sees every batch)."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.epochs: list[int] = []
        self.batches: list[int] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs.append(epoch)
        self.batches.append(0)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.batches[-1] += 1


class RaiseAtEpochEnd(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.epoch:
            raise RuntimeError("callback bug")


def _active() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run is not None else None


# -- checks ---------------------------------------------------------------------------------------
def _report(client: MlflowClient, run_id: str, tmp: Path) -> dict:
    dst = tmp / f"report-{run_id}"
    dst.mkdir(parents=True, exist_ok=True)
    return json.loads(Path(client.download_artifacts(run_id, schema.REPORT_ARTIFACT, str(dst))).read_text())


def _check_run(client: MlflowClient, run_id: str, tmp: Path, *, steps: list[int], samples: list[int],
               status: str = "FINISHED", validation: int | None = None, report_steps: list[int] | None = None) -> dict:
    """The run as a user sees it; ``samples``: training samples trained at each step (of every fit in the run)."""
    assert run_id, "no run"
    run = client.get_run(run_id)
    assert run.info.status == status, (run.info.status, status)
    hist = assert_green_invariants(run_id, client)  # one point per step, phases add up, projection = total
    energy = hist[schema.ENERGY_KWH]
    assert [m.step for m in energy] == steps
    for key in (schema.ENERGY_PER_SAMPLE_J, schema.PROJECTED_ENERGY_KWH, schema.DURATION_S, schema.ENERGY_TRAIN_KWH):
        assert [m.step for m in hist[key]] == steps, key
    per_sample = {m.step: m.value for m in hist[schema.ENERGY_PER_SAMPLE_J]}
    seen = list(itertools.accumulate(samples))
    for point, trained in zip(energy, seen):
        expected = point.value * 3.6e6 / trained
        assert per_sample[point.step] == pytest.approx(expected, rel=1e-6), (point.step, trained, per_sample)
    report = _report(client, run_id, tmp)
    assert report["framework"] == "keras" and report["status"] == status
    assert report["samples"]["train"] == seen[-1], (report["samples"], seen)
    assert report["samples"].get("validation") == validation, report["samples"]
    if report_steps is not None:
        assert [e["step"] for e in report["epochs"]] == report_steps
    return hist


def _no_error(result: Result) -> None:
    if "error" in result:  # the case itself raised: a failure of its own, not an assertion
        pytest.fail(f"the case raised: {result['traceback']}")


# -- 1. validation_freq=2 ---------------------------------------------------------------------------
@case
def validation_every_other_epoch(out: Path) -> Result:
    x, y, xv, yv = _data()
    cb, counter = GreenCallback(), Counter()
    _mlp().fit(x, y, validation_data=(xv, yv), validation_freq=2, epochs=4, batch_size=BATCH, verbose=0,
               callbacks=[counter, cb])
    return {"run_id": cb.session.run_id, "epochs": counter.epochs}


def check_validation_every_other_epoch(result: Result, client: MlflowClient, tmp: Path) -> None:
    _no_error(result)
    assert result["epochs"] == [0, 1, 2, 3]
    hist = _check_run(client, result["run_id"], tmp, steps=[0, 1, 2, 3], samples=[N_TRAIN] * 4,
                      validation=2 * N_VAL, report_steps=[0, 1, 2, 3])
    validation = [m.value for m in hist[schema.ENERGY_VALIDATION_KWH]]
    # validated after epochs 1 and 3 only: the running validation total grows there and nowhere else
    assert validation[0] == 0.0 and validation[1] > 0.0 and validation[2] == validation[1] and validation[3] > validation[2]


def test_validation_every_other_epoch(mlflow_experiment: str, tmp_path: Path) -> None:
    check_validation_every_other_epoch(validation_every_other_epoch(tmp_path), MlflowClient(), tmp_path)


# -- 2. initial_epoch=3, epochs=6: a resumed fit ----------------------------------------------------------
@case
def resumed_fit_in_a_new_run(out: Path) -> Result:
    x, y, _, _ = _data()
    cb, counter = GreenCallback(), Counter()
    _mlp().fit(x, y, initial_epoch=3, epochs=6, batch_size=BATCH, verbose=0, callbacks=[counter, cb])
    return {"run_id": cb.session.run_id, "epochs": counter.epochs, "active_after": _active()}


def check_resumed_fit_in_a_new_run(result: Result, client: MlflowClient, tmp: Path) -> None:
    _no_error(result)
    assert result["epochs"] == [3, 4, 5] and result["active_after"] is None
    hist = _check_run(client, result["run_id"], tmp, steps=[3, 4, 5], samples=[N_TRAIN] * 3, report_steps=[3, 4, 5])
    # after the fit's first epoch (3 of 0..5), two epochs remain at that epoch's energy
    energy, epoch, projected = (hist[k][0].value for k in (
        schema.ENERGY_KWH, schema.EPOCH_ENERGY_KWH, schema.PROJECTED_ENERGY_KWH))
    assert projected == pytest.approx(energy + 2 * epoch, rel=1e-6)


def test_resumed_fit_at_initial_epoch_3_in_a_new_run(mlflow_experiment: str, tmp_path: Path) -> None:
    check_resumed_fit_in_a_new_run(resumed_fit_in_a_new_run(tmp_path), MlflowClient(), tmp_path)


def test_resumed_fit_in_the_same_active_run_with_the_same_callback(mlflow_experiment: str, tmp_path: Path) -> None:
    x, y, _, _ = _data()
    cb, model = GreenCallback(), _mlp()
    with mlflow.start_run() as run:
        model.fit(x, y, epochs=3, batch_size=BATCH, verbose=0, callbacks=[cb])
        model.fit(x, y, initial_epoch=3, epochs=6, batch_size=BATCH, verbose=0, callbacks=[cb])
        assert _active() == run.info.run_id == cb.session.run_id  # the user's run: used, never ended
    hist = _check_run(MlflowClient(), run.info.run_id, tmp_path, steps=[0, 1, 2, 3, 4, 5], samples=[N_TRAIN] * 6)
    energy, epoch, projected = ({m.step: m.value for m in hist[k]} for k in (
        schema.ENERGY_KWH, schema.EPOCH_ENERGY_KWH, schema.PROJECTED_ENERGY_KWH))
    assert projected[3] == pytest.approx(energy[3] + 2 * epoch[3], rel=1e-6)  # the run's total so far + 2 epochs


@pytest.mark.parametrize("initial_epoch", [3, 0], ids=["resumed-at-epoch-3", "restarted-at-epoch-0"])
def test_a_later_fit_with_a_fresh_callback_in_the_run_of_an_earlier_fit(
    initial_epoch: int, mlflow_experiment: str, tmp_path: Path
) -> None:
    """A new callback in a run holding an earlier fit's figures (a re-run script, BackupAndRestore) continues
    the run's totals and steps from the earlier fit's report, as the same callback would (they started at zero:
    the running total fell, or two points at each step)."""
    x, y, _, _ = _data()
    model = _mlp()
    with mlflow.start_run() as run:
        model.fit(x, y, epochs=3, batch_size=BATCH, verbose=0, callbacks=[GreenCallback()])
    with mlflow.start_run(run_id=run.info.run_id):  # the same run, reopened (a re-run script)
        model.fit(x, y, initial_epoch=initial_epoch, epochs=initial_epoch + 3, batch_size=BATCH, verbose=0,
                  callbacks=[GreenCallback()])
    # the run's totals go on, the steps continue after the last one
    _check_run(MlflowClient(), run.info.run_id, tmp_path, steps=[0, 1, 2, 3, 4, 5], samples=[N_TRAIN] * 6)


def test_a_fresh_callback_in_a_run_whose_earlier_fit_left_no_report_continues_its_steps(
    mlflow_experiment: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An earlier fit killed before its report (its points replayed from the spool): the steps go on after its
    last one, its totals cannot be read back and start again, with a warning that says so."""
    x, y, _, _ = _data()
    with mlflow.start_run() as run:
        for step in range(3):  # what a killed fit's replayed spool leaves: points, no green/report.json
            mlflow.log_metric(schema.ENERGY_KWH, (step + 1) * 1e-7, step=step)
        with caplog.at_level(logging.WARNING, logger="mlflow_green"):
            _mlp().fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[GreenCallback()])
    history = MlflowClient().get_metric_history(run.info.run_id, schema.ENERGY_KWH)
    assert sorted(m.step for m in history) == [0, 1, 2, 3, 4]  # one point a step: none written twice
    assert "its steps are continued, its totals start again from zero" in caplog.text


# -- 3. validation_split=0.2 ------------------------------------------------------------------------
def test_validation_split(mlflow_experiment: str, tmp_path: Path) -> None:
    x, y, _, _ = _data()
    cb = GreenCallback()
    _mlp().fit(x, y, validation_split=0.2, epochs=3, batch_size=BATCH, verbose=0, callbacks=[cb])
    train, held_out = int(N_TRAIN * 0.8), N_TRAIN - int(N_TRAIN * 0.8)  # 1 024 / 256
    hist = _check_run(MlflowClient(), cb.session.run_id, tmp_path, steps=[0, 1, 2], samples=[train] * 3,
                      validation=3 * held_out, report_steps=[0, 1, 2])
    assert all(m.value > 0 for m in hist[schema.ENERGY_VALIDATION_KWH])


# -- 4. steps_per_epoch smaller than the data ---------------------------------------------------------
@case
def steps_per_epoch_repeated_dataset(out: Path) -> Result:
    import tensorflow as tf

    x, y, _, _ = _data()
    cb, counter = GreenCallback(), Counter()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).repeat()  # 40 batches, 10 an epoch
    _mlp().fit(data, steps_per_epoch=10, epochs=3, shuffle=False, verbose=0, callbacks=[counter, cb])
    return {"run_id": cb.session.run_id, "epochs": counter.epochs, "batches": counter.batches}


def check_steps_per_epoch_repeated_dataset(result: Result, client: MlflowClient, tmp: Path) -> None:
    _no_error(result)
    assert result["batches"] == [10, 10, 10]
    _check_run(client, result["run_id"], tmp, steps=[0, 1, 2], samples=[320] * 3, report_steps=[0, 1, 2])


@case
def steps_per_epoch_data_runs_out(out: Path) -> Result:
    """42 batches of 32 of unknown cardinality, 10 an epoch, 6 epochs: epoch 4 gets 2 batches, then Keras warns
    that the input ran out, ends that epoch and starts the data over for epoch 5; ``fit`` returns normally."""
    import tensorflow as tf

    x, y = _digits()
    cb, counter = GreenCallback(), Counter()
    data = tf.data.Dataset.from_tensor_slices((x[:1344], y[:1344])).filter(lambda a, b: True).batch(32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _mlp().fit(data, steps_per_epoch=10, epochs=6, shuffle=False, verbose=0, callbacks=[counter, cb])
    return {"run_id": cb.session.run_id, "epochs": counter.epochs, "batches": counter.batches, "active_after": _active(),
            "ran_out": any("ran out of data" in str(w.message) for w in caught)}


def check_steps_per_epoch_data_runs_out(result: Result, client: MlflowClient, tmp: Path) -> None:
    _no_error(result)
    assert result["ran_out"] and result["epochs"] == [0, 1, 2, 3, 4, 5]
    assert result["batches"] == [10, 10, 10, 10, 2, 10], "epoch 4 was cut short by the data, epoch 5 started it over"
    assert result["active_after"] is None
    _check_run(client, result["run_id"], tmp, steps=[0, 1, 2, 3, 4, 5], samples=[32 * b for b in result["batches"]],
               report_steps=[0, 1, 2, 3, 4, 5])




@case
def steps_per_epoch_arrays_run_out(out: Path) -> Result:
    """Arrays of 200 samples in batches of 30 (the 7th of 20), 3 steps an epoch: epochs of 90, 90, then the
    last batch alone (20: the data ran out), then 90 again — not four epochs of 90."""
    x, y = _digits()
    cb, counter = GreenCallback(), Counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns that the input ran out
        _mlp().fit(x[:200], y[:200], batch_size=30, steps_per_epoch=3, epochs=4, shuffle=False, verbose=0,
                   callbacks=[counter, cb])
    return {"run_id": cb.session.run_id, "batches": counter.batches}


def check_steps_per_epoch_arrays_run_out(result: Result, client: MlflowClient, tmp: Path) -> None:
    _no_error(result)
    assert result["batches"] == [3, 3, 1, 3]
    _check_run(client, result["run_id"], tmp, steps=[0, 1, 2, 3], samples=[90, 90, 20, 90], report_steps=[0, 1, 2, 3])


def test_steps_per_epoch_with_arrays_that_run_out(mlflow_experiment: str, tmp_path: Path) -> None:
    check_steps_per_epoch_arrays_run_out(steps_per_epoch_arrays_run_out(tmp_path), MlflowClient(), tmp_path)


def test_steps_per_epoch_with_a_repeated_dataset(mlflow_experiment: str, tmp_path: Path) -> None:
    check_steps_per_epoch_repeated_dataset(steps_per_epoch_repeated_dataset(tmp_path), MlflowClient(), tmp_path)


def test_steps_per_epoch_when_the_data_runs_out(mlflow_experiment: str, tmp_path: Path) -> None:
    """The input running out inside the step (TF: OutOfRangeError, JAX: StopIteration) ends the epoch: Keras
    warns and goes on, and so does the run (it was ended FAILED at that epoch)."""
    check_steps_per_epoch_data_runs_out(steps_per_epoch_data_runs_out(tmp_path), MlflowClient(), tmp_path)


# -- 5. class_weight / sample_weight ------------------------------------------------------------------
@pytest.mark.parametrize("weights", ["class_weight", "sample_weight"])
def test_class_and_sample_weights_count_every_sample_trained(weights: str, mlflow_experiment: str, tmp_path: Path) -> None:
    x, y, xv, yv = _data()
    if weights == "class_weight":
        kwargs: dict[str, Any] = {"class_weight": {c: 0.0 if c == 3 else 1.0 + c / 10 for c in range(10)}}
    else:  # half the samples weigh nothing: they are still trained (forward and backward)
        kwargs = {"sample_weight": np.tile(np.array([0.0, 1.5], "float32"), N_TRAIN // 2)}
    cb = GreenCallback()
    _mlp().fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=BATCH, verbose=0, callbacks=[cb], **kwargs)
    _check_run(MlflowClient(), cb.session.run_id, tmp_path, steps=[0, 1], samples=[N_TRAIN] * 2,
               validation=2 * N_VAL, report_steps=[0, 1])


# -- 6. TerminateOnNaN: stop_training inside an epoch -------------------------------------------------
@case
def terminate_on_nan(out: Path) -> Result:
    x, y, xv, yv = _data()
    y = y.copy()
    y[17 * BATCH : 18 * BATCH] = 10  # batch 17 of epoch 0 has a NaN loss: 18 batches trained, then the stop
    cb, counter = GreenCallback(), Counter()
    history = _mlp(_nan_at_label_10).fit(x, y, validation_data=(xv, yv), epochs=3, batch_size=BATCH, shuffle=False,
                                         verbose=0, callbacks=[counter, keras.callbacks.TerminateOnNaN(), cb])
    return {"run_id": cb.session.run_id, "epochs": counter.epochs, "batches": counter.batches,
            "history_epochs": len(history.history["loss"])}


def check_terminate_on_nan(result: Result, client: MlflowClient, tmp: Path) -> None:
    _no_error(result)
    assert result["epochs"] == [0] and result["batches"] == [18] and result["history_epochs"] == 1
    # Keras still validates the epoch it stopped in
    _check_run(client, result["run_id"], tmp, steps=[0], samples=[18 * BATCH], validation=N_VAL, report_steps=[0])


def test_terminate_on_nan_stops_inside_the_first_epoch(mlflow_experiment: str, tmp_path: Path) -> None:
    check_terminate_on_nan(terminate_on_nan(tmp_path), MlflowClient(), tmp_path)


# -- 7. EarlyStopping(patience=0) with ReduceLROnPlateau ------------------------------------------------
def test_early_stopping_with_reduce_lr_on_plateau(mlflow_experiment: str, tmp_path: Path) -> None:
    x, y, xv, yv = _data()
    cb, counter = GreenCallback(), Counter()
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0)  # no epoch improves by 10
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=0, min_delta=10.0, factor=0.5)
    _mlp().fit(x, y, validation_data=(xv, yv), epochs=5, batch_size=BATCH, verbose=0, callbacks=[counter, stop, plateau, cb])
    assert counter.epochs == [0, 1], "stopped after epoch 1"
    hist = _check_run(MlflowClient(), cb.session.run_id, tmp_path, steps=[0, 1], samples=[N_TRAIN] * 2,
                      validation=2 * N_VAL, report_steps=[0, 1])
    energy, epoch, projected = ([m.value for m in hist[k]] for k in (
        schema.ENERGY_KWH, schema.EPOCH_ENERGY_KWH, schema.PROJECTED_ENERGY_KWH))
    assert projected[0] == pytest.approx(energy[0] + 4 * epoch[0], rel=1e-6)  # the 5-epoch plan after epoch 0
    assert projected[1] == pytest.approx(energy[1], rel=1e-9)  # after the early stop: the actual total
    assert schema.ACCURACY_PER_KWH in MlflowClient().get_run(cb.session.run_id).data.metrics


# -- 8. BackupAndRestore: a fit interrupted at epoch 2, then run again ----------------------------------
@case
def backup_and_restore(out: Path) -> Result:
    x, y, _, _ = _data()
    backup = str(out / "backup")
    first, counter = GreenCallback(), Counter()
    raised = None
    try:  # the backup of epoch 2 is written before the callback raises at its end
        _mlp().fit(x, y, epochs=5, batch_size=BATCH, verbose=0, callbacks=[
            counter, keras.callbacks.BackupAndRestore(backup), RaiseAtEpochEnd(2), first])
    except RuntimeError as exc:
        raised = str(exc)
    second, again = GreenCallback(), Counter()
    _mlp().fit(x, y, epochs=5, batch_size=BATCH, verbose=0, callbacks=[again, keras.callbacks.BackupAndRestore(backup), second])
    return {"raised": raised, "first_run_id": first.session.run_id, "first_epochs": counter.epochs,
            "run_id": second.session.run_id, "epochs": again.epochs, "batches": again.batches, "active_after": _active()}


def check_backup_and_restore(result: Result, client: MlflowClient, tmp: Path) -> None:
    _no_error(result)
    assert result["raised"] == "callback bug" and result["first_epochs"] == [0, 1, 2]
    assert result["epochs"] == [3, 4] and result["batches"] == [BATCHES, BATCHES], "Keras resumed at epoch 3"
    # the interrupted fit: FAILED, with epoch 2 (trained in full before the callback raised) billed
    _check_run(client, result["first_run_id"], tmp, status="FAILED", steps=[0, 1, 2], samples=[N_TRAIN] * 3)
    # the resumed fit: a new run (the failed one ended), steps = Keras's epochs, totals of this fit only
    assert result["run_id"] != result["first_run_id"] and result["active_after"] is None
    _check_run(client, result["run_id"], tmp, steps=[3, 4], samples=[N_TRAIN] * 2, report_steps=[3, 4])
    resumed = client.get_run(result["run_id"])  # linked to the run it resumes, as a Lightning checkpoint's would be
    assert resumed.data.tags.get(schema.TAG_RESUMED_FROM) == result["first_run_id"]
    assert schema.TAG_RESUMED_FROM not in client.get_run(result["first_run_id"]).data.tags
    assert not (tmp / "backup").exists()  # Keras removed the folder at the end, the callback's note with it


def test_backup_and_restore_resumes_after_an_interrupted_fit(mlflow_experiment: str, tmp_path: Path) -> None:
    check_backup_and_restore(backup_and_restore(tmp_path), MlflowClient(), tmp_path)


def test_backup_and_restore_resumed_in_the_same_active_run_continues_its_totals(mlflow_experiment: str, tmp_path: Path) -> None:
    """Keras's own example: interrupted, then fit again with a new callback, inside one active run: the run
    goes on (steps, totals, samples), not tagged as resumed from itself."""
    x, y, _, _ = _data()
    backup = str(tmp_path / "backup")
    with mlflow.start_run() as run:
        with pytest.raises(RuntimeError):
            _mlp().fit(x, y, epochs=5, batch_size=BATCH, verbose=0, callbacks=[
                keras.callbacks.BackupAndRestore(backup), RaiseAtEpochEnd(2), GreenCallback()])
        again, second = Counter(), GreenCallback()
        _mlp().fit(x, y, epochs=5, batch_size=BATCH, verbose=0, callbacks=[again, keras.callbacks.BackupAndRestore(backup), second])
    assert again.epochs == [3, 4] and second.session.run_id == run.info.run_id
    client = MlflowClient()
    _check_run(client, run.info.run_id, tmp_path, steps=[0, 1, 2, 3, 4], samples=[N_TRAIN] * 5, report_steps=[3, 4])
    assert schema.TAG_RESUMED_FROM not in client.get_run(run.info.run_id).data.tags


# -- 9. two GreenCallback instances in one fit (a user error) ------------------------------------------
@case
def two_callbacks_in_one_fit(out: Path) -> Result:
    x, y, xv, yv = _data()
    first, second, counter = GreenCallback(), GreenCallback(), Counter()
    model = _mlp()
    history = model.fit(x, y, validation_data=(xv, yv), epochs=3, batch_size=BATCH, verbose=0,
                        callbacks=[counter, first, second])
    model.evaluate(xv, yv, batch_size=BATCH, verbose=0, callbacks=[first, second])  # both again: one measures
    tested = MlflowClient().get_metric_history(first.session.run_id, schema.ENERGY_TEST_KWH)
    return {"run_ids": [first.session.run_id, second.session.run_id], "epochs": counter.epochs,
            "history_epochs": len(history.history["loss"]), "active_after": _active(),
            "test_points": len(tested)}


def check_two_callbacks_in_one_fit(result: Result, client: MlflowClient, tmp: Path) -> None:
    _no_error(result)  # training is never crashed by it
    assert result["epochs"] == [0, 1, 2] and result["history_epochs"] == 3 and result["active_after"] is None
    runs = {run_id for run_id in result["run_ids"] if run_id}
    assert result["run_ids"][1] is None  # the second stood aside: it made no run, bound to none
    assert result["test_points"] == 1  # the evaluate after, with both again: measured once
    for run_id in runs:  # whichever run(s) hold the figures: one point per step, the right totals
        _check_run(client, run_id, tmp, steps=[0, 1, 2], samples=[N_TRAIN] * 3, validation=3 * N_VAL,
                   report_steps=[0, 1, 2])




def test_two_green_callbacks_in_one_fit(mlflow_experiment: str, tmp_path: Path) -> None:
    """Two GreenCallbacks in one fit (or evaluate): the first measures, the other stands aside with a warning
    (both logged every figure into the one run: two points at every step)."""
    check_two_callbacks_in_one_fit(two_callbacks_in_one_fit(tmp_path), MlflowClient(), tmp_path)


def test_the_same_callback_passed_twice_measures_once(mlflow_experiment: str, tmp_path: Path) -> None:
    x, y, xv, yv = _data()
    cb = GreenCallback()
    _mlp().fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=BATCH, verbose=0, callbacks=[cb, cb])
    _check_run(MlflowClient(), cb.session.run_id, tmp_path, steps=[0, 1], samples=[N_TRAIN] * 2, validation=2 * N_VAL)


def test_an_evaluation_by_another_callback_between_two_fits_leaves_the_runs_totals_to_continue(
    mlflow_experiment: str, tmp_path: Path
) -> None:
    """A fresh callback that only evaluates in the run writes a report whose state is still the run's totals
    (not the evaluation's energy alone), so that a third callback's fit continues from the first fit's."""
    x, y, xv, yv = _data()
    model = _mlp()
    with mlflow.start_run() as run:
        model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[GreenCallback()])
        after_first = MlflowClient().get_run(run.info.run_id).data.metrics[schema.ENERGY_KWH]
        model.evaluate(xv, yv, batch_size=BATCH, verbose=0, callbacks=[GreenCallback()])
        model.fit(x, y, initial_epoch=2, epochs=4, batch_size=BATCH, verbose=0, callbacks=[GreenCallback()])
    hist = _check_run(MlflowClient(), run.info.run_id, tmp_path, steps=[0, 1, 2, 3], samples=[N_TRAIN] * 4)
    energy = {m.step: m.value for m in hist[schema.ENERGY_KWH]}
    assert energy[1] == pytest.approx(after_first) and energy[2] > after_first  # the running total goes on


# -- 10. one callback for fit, evaluate, predict, fit, without an active run ----------------------------
@case
def reuse_for_fit_evaluate_predict_fit(out: Path) -> Result:
    x, y, xv, yv = _data()
    cb, model = GreenCallback(), _mlp()
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[cb])
    first = cb.session.run_id
    model.evaluate(xv, yv, batch_size=BATCH, verbose=0, callbacks=[cb])
    model.predict(xv[:100], batch_size=50, verbose=0, callbacks=[cb])
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[cb])
    return {"first_run_id": first, "run_id": cb.session.run_id, "active_after": _active()}


def check_reuse_for_fit_evaluate_predict_fit(result: Result, client: MlflowClient, tmp: Path) -> None:
    _no_error(result)
    assert result["active_after"] is None
    first, second = result["first_run_id"], result["run_id"]
    assert first != second, "each fit without an active run gets its own run"
    _check_run(client, first, tmp, steps=[0, 1], samples=[N_TRAIN] * 2, report_steps=[0, 1])
    metrics = client.get_run(first).data.metrics
    assert metrics[schema.phase_energy_per_sample_key("test")] == pytest.approx(
        metrics[schema.ENERGY_TEST_KWH] * 3.6e6 / N_VAL, rel=1e-6)
    assert metrics[schema.phase_energy_per_sample_key("predict")] == pytest.approx(
        metrics[schema.ENERGY_PREDICT_KWH] * 3.6e6 / 100, rel=1e-6)
    assert _report(client, first, tmp / "again")["samples"] == {"train": 2 * N_TRAIN, "test": N_VAL, "predict": 100}
    _check_run(client, second, tmp, steps=[0, 1], samples=[N_TRAIN] * 2, report_steps=[0, 1])
    assert schema.ENERGY_TEST_KWH not in client.get_run(second).data.metrics


def test_one_callback_reused_for_fit_evaluate_predict_fit(mlflow_experiment: str, tmp_path: Path) -> None:
    check_reuse_for_fit_evaluate_predict_fit(reuse_for_fit_evaluate_predict_fit(tmp_path), MlflowClient(), tmp_path)


# -- 13. steps_per_execution: several batches in one call of the step function ------------------------------
@case
def steps_per_execution(out: Path) -> Result:
    x, y, xv, yv = _data()
    cb, counter = GreenCallback(), Counter()
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], steps_per_execution=4)
    model.fit(x, y, validation_data=(xv, yv), epochs=3, batch_size=BATCH, verbose=0, callbacks=[counter, cb])
    return {"run_id": cb.session.run_id, "epochs": counter.epochs, "active_after": _active()}


def check_steps_per_execution(result: Result, client: MlflowClient, tmp: Path) -> None:
    _no_error(result)
    assert result["epochs"] == [0, 1, 2] and result["active_after"] is None
    _check_run(client, result["run_id"], tmp, steps=[0, 1, 2], samples=[N_TRAIN] * 3, validation=3 * N_VAL,
               report_steps=[0, 1, 2])


def test_steps_per_execution(mlflow_experiment: str, tmp_path: Path) -> None:
    check_steps_per_execution(steps_per_execution(tmp_path), MlflowClient(), tmp_path)


CHECKS: dict[str, Callable[[Result, MlflowClient, Path], None]] = {name: globals()[f"check_{name}"] for name in CASES}


# -- torch and JAX: the same cases in one subprocess per backend ------------------------------------------
OTHER_BACKEND_CASES = (  # those where the backend changes the path: where the input is read, how a fit stops
    "validation_every_other_epoch", "steps_per_epoch_data_runs_out", "steps_per_epoch_arrays_run_out", "terminate_on_nan",
    "backup_and_restore",
    "two_callbacks_in_one_fit", "steps_per_execution",
)
NOT_ON = {"torch": {"steps_per_execution"}}  # Keras refuses steps_per_execution > 1 on torch


def _cases_on(backend: str) -> list[str]:
    return [name for name in OTHER_BACKEND_CASES if name not in NOT_ON.get(backend, set())]


@pytest.fixture(scope="module")
def other_backend(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[dict, MlflowClient, Path]]:
    """Runs every case of OTHER_BACKEND_CASES once per backend (Keras fixes its backend at import)."""
    done: dict[str, tuple[dict, MlflowClient, Path]] = {}

    def results(backend: str) -> tuple[dict, MlflowClient, Path]:
        if backend not in done:
            pytest.importorskip(backend)
            out = tmp_path_factory.mktemp(f"keras-{backend}")
            proc = subprocess.run([sys.executable, __file__, backend, str(out), *_cases_on(backend)],
                                  capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                pytest.fail(f"{backend} cases: {proc.stdout[-3000:]}{proc.stderr[-3000:]}")
            done[backend] = (json.loads((out / "result.json").read_text()),
                             MlflowClient(f"sqlite:///{out / 'mlflow.db'}"), out)
        return done[backend]

    return results


@pytest.mark.parametrize(("backend", "name"), [
    pytest.param(backend, name, id=f"{backend}-{name}") for backend in ("torch", "jax") for name in _cases_on(backend)
])
def test_on_torch_and_jax(backend: str, name: str, other_backend, tmp_path: Path) -> None:
    results, client, _ = other_backend(backend)
    CHECKS[name](results[name], client, tmp_path)


if __name__ == "__main__":
    backend, out, names = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    assert keras.backend.backend() == backend
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(backend, artifact_location=(out / "artifacts").as_uri()))
    results: dict[str, Result] = {}
    for name in names:
        (out / name).mkdir()
        try:
            results[name] = CASES[name](out / name)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        while mlflow.active_run() is not None:
            mlflow.end_run()
    (out / "result.json").write_text(json.dumps(results))
