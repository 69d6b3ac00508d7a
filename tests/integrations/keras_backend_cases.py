"""Keras fits that end in every way, on one backend.

KERAS_BACKEND must be set before Keras is imported: the test process (TensorFlow) calls
:func:`run_cases` itself; the torch and JAX backends run ``python keras_backend_cases.py BACKEND
OUT_DIR`` (runs in OUT_DIR/mlflow.db, results in OUT_DIR/result.json). Kept small: 8x8 digits,
a 64-16-10 MLP, a few batches.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = sys.argv[1]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["MLFLOW_GREEN_SPOOL_DIR"] = str(Path(sys.argv[2]) / "spool")

import keras  # noqa: E402
import mlflow  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from mlflow_green.integrations._fit_watch import LOOK_INTERVAL_S  # noqa: E402
from mlflow_green.integrations.keras import GreenCallback  # noqa: E402
from mlflow_green.testing import FakeMeter, PerReadMeter  # noqa: E402

data = load_digits()
X = (data.data / 16.0).astype("float32")[:640]
Y = data.target.astype("int64")[:640]
CASES: dict[str, object] = {}


def mlp() -> keras.Model:
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class Batches(keras.utils.PyDataset):
    """64-sample batches; optionally slow (input wait), failing at a given read, or one batch no step can train."""

    def __init__(self, n: int = 10, *, sleep_s: float = 0.0, fail_at: int | None = None, untrainable: int | None = None) -> None:
        super().__init__()
        self.n, self.sleep_s, self.fail_at, self.untrainable, self.reads = n, sleep_s, fail_at, untrainable, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        self.reads += 1
        if self.fail_at is not None and self.reads > self.fail_at:
            raise OSError("corrupt shard")
        time.sleep(self.sleep_s)
        j = (i * 64) % 576
        if i == self.untrainable:  # read fine, but 60 features for a 64-input model: the step raises
            return X[j : j + 64, :60], Y[j : j + 64]
        return X[j : j + 64], Y[j : j + 64]


class Clock(keras.callbacks.Callback):
    """When the fit began, and how many training batches ended (their step finished) in all."""

    def on_train_begin(self, logs=None):
        self.start_s, self.batch_ends = time.monotonic(), 0

    def on_train_batch_end(self, batch, logs=None):
        self.batch_ends += 1


class RaiseAtEpochEnd(keras.callbacks.Callback):
    def __init__(self, exc: BaseException, epoch: int = 1) -> None:
        super().__init__()
        self.exc, self.epoch, self.at_s = exc, epoch, None

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.at_s = time.monotonic()
            raise self.exc


class RaiseAtBatchEnd(keras.callbacks.Callback):
    """Raises after ``batch`` (counted from 0) of ``epoch`` trained: the fit ends inside that epoch."""

    def __init__(self, exc: BaseException, *, epoch: int, batch: int) -> None:
        super().__init__()
        self.exc, self.epoch, self.batch, self.current = exc, epoch, batch, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise self.exc


def case(name):
    def register(fn):
        CASES[name] = fn
        return fn
    return register


def run_cases(out: Path) -> dict[str, dict]:
    """Run every case (MLflow's tracking URI and experiment set by the caller); what each returned."""
    results: dict[str, dict] = {}
    for name, fn in CASES.items():
        try:
            results[name] = fn(out) or {}
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    return results


def writer_stacks() -> dict[str, str]:
    """Where each of mlflow-green's background threads is now (shown by a test that finds a run not ended)."""
    names = {thread.ident: thread.name for thread in threading.enumerate() if thread.name.startswith("mlflow-green")}
    stacks = {f"{names[ident]}-{ident}": "".join(traceback.format_stack(frame, limit=10))
              for ident, frame in sys._current_frames().items() if ident in names}
    try:  # the store's connection pool: none left makes every session wait 30 s
        from mlflow.tracking._tracking_service.utils import _get_store

        stacks["pool"] = _get_store().engine.pool.status()
    except Exception as exc:  # noqa: BLE001 - not a SQL store, another MLflow's internals
        stacks["pool"] = repr(exc)
    return stacks


def failing_fit(cb: GreenCallback, *callbacks, x=None, sleep_s: float = 0.5, **kwargs) -> dict:
    """A fit that raises; then ``sleep_s`` in this process before anything is read (the meters must have stopped)."""
    clock = Clock()
    try:
        mlp().fit(x if x is not None else X, None if x is not None else Y, epochs=3, batch_size=64, verbose=0,
                  callbacks=[clock, cb, *callbacks], **kwargs)
        raised = None
    except BaseException as exc:  # noqa: BLE001
        raised = type(exc).__name__
    elapsed_s = time.monotonic() - clock.start_s
    time.sleep(sleep_s)
    return {"raised": raised, "elapsed_s": elapsed_s, "run_id": cb.session.run_id, "batch_ends": clock.batch_ends,
            "active_after": mlflow.active_run().info.run_id if mlflow.active_run() else None}


@case("checkpoint_cannot_write")
def _(out: Path):
    cb = GreenCallback()
    blocker = out / "not-a-dir"
    blocker.write_text("a file where the checkpoint directory should be")
    saver = keras.callbacks.ModelCheckpoint(str(blocker / "model.keras"))
    out = failing_fit(cb, saver)
    # the next training does not log into the failed run
    nxt = GreenCallback()
    mlp().fit(X, Y, epochs=1, batch_size=128, verbose=0, callbacks=[nxt])
    return {**out, "next_run_id": nxt.session.run_id}


@case("error_in_keras_own_code")
def _(out: Path):
    # validation inputs and targets of different lengths: Keras raises building the validation's iterator,
    # after the first epoch trained, outside every hook and step
    return failing_fit(GreenCallback(), validation_data=(X[:50], Y[:40]), sleep_s=2 * LOOK_INTERVAL_S + 1.5)


class RaiseAtBegin(keras.callbacks.Callback):
    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    def on_train_begin(self, logs=None):
        raise self.exc

    on_test_begin = on_predict_begin = on_train_begin


@case("later_callback_fails_at_train_begin")
def _(out: Path):
    # listed after ours, in the same on_train_begin dispatch (a CSVLogger that cannot open its file; Ctrl-C)
    seen = {}
    calls = (("interrupt", KeyboardInterrupt(), "fit"), ("oserror", OSError("cannot open the log file"), "fit"),
             ("evaluate_interrupt", KeyboardInterrupt(), "evaluate"), ("predict_interrupt", KeyboardInterrupt(), "predict"))
    for name, exc, call in calls:
        cb, model = GreenCallback(), mlp()
        try:
            if call == "fit":
                model.fit(X, Y, epochs=2, batch_size=64, verbose=0, callbacks=[cb, RaiseAtBegin(exc)])
            elif call == "evaluate":
                model.evaluate(X, Y, batch_size=64, verbose=0, callbacks=[cb, RaiseAtBegin(exc)])
            else:
                model.predict(X, batch_size=64, verbose=0, callbacks=[cb, RaiseAtBegin(exc)])
            raised = None
        except BaseException as exc:  # noqa: BLE001
            raised = type(exc).__name__
        active = mlflow.active_run()  # what the user's except block finds, at once
        status = mlflow.MlflowClient().get_run(cb.session.run_id).info.status
        seen[name] = {"raised": raised, "status": status, "active": active.info.run_id if active else None}
    return seen


class AtTrainEnd(keras.callbacks.Callback):
    """Listed after ours, in its ``on_train_end``: logs with MLflow's fluent API (no run of the user's active), after
    evaluating the model with the fit's callback, in a run of its own (``with mlflow.start_run()``), or raises."""

    def __init__(self, mode: str, cb: GreenCallback) -> None:
        super().__init__()
        self.mode, self.cb, self.active = mode, cb, None

    def on_train_end(self, logs=None):
        active = mlflow.active_run()
        self.active = active.info.run_id if active else None
        if self.mode in ("raises", "interrupt"):
            raise OSError("cannot write the final model") if self.mode == "raises" else KeyboardInterrupt()
        accuracy = logs["accuracy"]
        if self.mode.startswith("evaluates"):  # the final model evaluated with the fit's callback: the fit ends first
            accuracy = self.model.evaluate(X, Y, batch_size=64, verbose=0, callbacks=[self.cb])[1]
        if self.mode == "refits":  # trained on with the fit's callback: the fit ends first (it ended FAILED, nested)
            self.model.fit(X, Y, epochs=1, batch_size=64, verbose=0, callbacks=[self.cb])
            return
        if self.mode == "starts_run":  # a run of its own, as without a GreenCallback (none active here)
            with mlflow.start_run(run_name="register"):
                mlflow.log_metric("final_accuracy", float(accuracy))
        else:
            mlflow.log_metric("final_accuracy", float(accuracy))


class Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


@case("later_callback_at_train_end")
def _(out: Path):
    # the fit ends once every callback's on_train_end returned (the later ones' work measured; one raising there ends
    # the run FAILED / KILLED, it stayed FINISHED); our run is no longer MLflow's active run in theirs (one that starts
    # a run of its own there can, as without us); a log_metric there has MLflow start a run: a warning says so
    seen = {}
    for mode in ("logs", "raises", "interrupt", "evaluates", "evaluates_listed_first", "starts_run", "refits"):
        cb = GreenCallback()
        later, messages = AtTrainEnd(mode, cb), Messages()
        fit_run = []
        logging.getLogger("mlflow_green").addHandler(messages)
        try:
            watch = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: fit_run.append(cb.session.run_id))
            listed = [later, cb, watch] if mode == "evaluates_listed_first" else [cb, watch, later]
            mlp().fit(X, Y, epochs=2, batch_size=64, verbose=0, callbacks=listed)
            raised = None
        except BaseException as exc:  # noqa: BLE001
            raised = type(exc).__name__
        finally:
            logging.getLogger("mlflow_green").removeHandler(messages)
        active = mlflow.active_run()
        stray = active.info.run_id if active is not None and active.info.run_id != cb.session.run_id else None
        run = mlflow.MlflowClient().get_run(fit_run[-1])  # the fit's (a fit after it has a run of its own)
        seen[mode] = {"raised": raised, "status": run.info.status, "ours_active_then": later.active == fit_run[-1],
                      "stray": stray is not None, "warned": any("was started in a callback's on_train_end" in m for m in messages.seen),
                      "tested": "green/energy_test_kwh" in run.data.metrics, "run_id": fit_run[-1],
                      "nested_warning": any("given to a fit started inside the fit" in m for m in messages.seen),
                      "later_run": cb.session.run_id if cb.session.run_id != fit_run[-1] else None}
        while mlflow.active_run() is not None:  # the stray run: ended, so that the next cases start with none active
            mlflow.end_run()
    return seen


@case("predict_alone_with_failing_input")
def _(out: Path):
    # TensorFlow reads predict's input in Python, outside the step: the error leaves predict where no hook sees it
    cb = GreenCallback()
    try:
        mlp().predict(Batches(5, fail_at=3), verbose=0, callbacks=[cb])
        raised = None
    except Exception as exc:  # noqa: BLE001
        raised = type(exc).__name__
    time.sleep(2 * LOOK_INTERVAL_S + 1.0)  # the watch's looks
    run = mlflow.MlflowClient().get_run(cb.session.run_id) if cb.session.run_id else None
    return {"raised": raised, "status": run.info.status if run else None,
            "energy_predict_kwh": run.data.metrics.get("green/energy_predict_kwh") if run else None}


@case("evaluate_right_after_an_error_in_keras_own_code")
def _(out: Path):
    # the same failure, then at once (before the fit's watch looks) an evaluate and a predict with the callback
    cb, clock = GreenCallback(), Clock()
    try:
        mlp().fit(X, Y, epochs=3, batch_size=64, verbose=0, validation_data=(X[:50], Y[:40]), callbacks=[clock, cb])
        raised = None
    except ValueError as exc:
        raised = type(exc).__name__
    elapsed_s = time.monotonic() - clock.start_s
    fit_run = cb.session.run_id
    model = cb.model

    class EvaluateBegins(keras.callbacks.Callback):  # called right before ours: when the evaluate's hooks start
        def on_test_begin(self, logs=None):
            self.at_s = time.monotonic()

    begins = EvaluateBegins()
    model.evaluate(X[:128], Y[:128], batch_size=64, verbose=0, callbacks=[begins, cb])
    model.predict(X[:192], batch_size=64, verbose=0, callbacks=[cb])
    time.sleep(2 * LOOK_INTERVAL_S + 0.5)  # the watch's looks: nothing more is billed to the fit
    return {"raised": raised, "elapsed_s": elapsed_s, "run_id": fit_run, "eval_run_id": cb.session.run_id,
            "until_evaluate_s": begins.at_s - clock.start_s,
            "active_after": mlflow.active_run().info.run_id if mlflow.active_run() else None}


def _fit_left_in_keras_own_code() -> tuple[str | None, float]:
    """A fit whose validation inputs and targets differ in length (Keras raises outside every hook and step), measured
    by a GreenCallback of its own; its run id and when it began."""
    cb, start_s = GreenCallback(), time.monotonic()
    try:
        mlp().fit(X, Y, epochs=3, batch_size=64, verbose=0, validation_data=(X[:50], Y[:40]), callbacks=[cb])
    except ValueError:
        pass
    return cb.session.run_id, start_s


@case("new_callbacks_right_after_an_error_in_keras_own_code")
def _(out: Path):
    """The same failure, then at once (before its watch looks) a fit, an evaluate, a track() block measured anew (a
    GreenCallback() of their own): each ends the failed fit as it begins, and logs into a run of its own — not into
    the failed run, which was still MLflow's active run — or, in a run of the user's, after the failed fit's steps."""

    keras.config.disable_traceback_filtering()  # else the fit ends as it raises (the next case), not as the next begins
    try:
        return _next_calls_after_errors_in_keras_own_code()
    finally:
        keras.config.enable_traceback_filtering()


def _next_calls_after_errors_in_keras_own_code() -> dict[str, object]:
    import mlflow_green

    seen: dict[str, object] = {}
    failed, start_s = _fit_left_in_keras_own_code()
    nxt, clock = GreenCallback(), Clock()  # the clock's on_train_begin, right before ours: when the next fit begins
    mlp().fit(X, Y, epochs=2, batch_size=128, verbose=0, callbacks=[clock, nxt])
    seen["fit"] = {"failed": failed, "next": nxt.session.run_id, "until_next_s": clock.start_s - start_s}
    seen["sigint_after"] = [repr(signal.getsignal(signal.SIGINT))]  # Python's again (it stayed a dead fit's watch's)
    failed, _ = _fit_left_in_keras_own_code()
    evaluation = GreenCallback()
    mlp().evaluate(X[:128], Y[:128], batch_size=64, verbose=0, callbacks=[evaluation])
    seen["evaluate"] = {"failed": failed, "next": evaluation.session.run_id}
    seen["sigint_after"].append(repr(signal.getsignal(signal.SIGINT)))
    failed, _ = _fit_left_in_keras_own_code()
    with mlflow_green.track() as block:
        mlp().predict(X[:64], verbose=0)
    seen["track"] = {"failed": failed, "next": block.run_id}
    seen["sigint_after"].append(repr(signal.getsignal(signal.SIGINT)))
    with mlflow.start_run() as users:
        _fit_left_in_keras_own_code()
        mlp().fit(X, Y, epochs=2, batch_size=128, verbose=0, callbacks=[GreenCallback()])
        seen["users_run"] = {"run_id": users.info.run_id, "active": mlflow.active_run().info.run_id}
    seen["active_after"] = mlflow.active_run().info.run_id if mlflow.active_run() else None
    return seen


@case("an_error_in_keras_own_code_leaves_no_run_active_in_the_except_block")
def _(out: Path):
    """The same failure: as the exception reaches the user's ``except``, the fit's run has ended (FAILED) and is no
    longer active, so a run of the user's starts there and holds what they log (it raised "already active", and
    their logs went into the failed run, until the fit's watch looked up to two seconds later)."""
    cb = GreenCallback()
    try:
        mlp().fit(X, Y, epochs=3, batch_size=64, verbose=0, validation_data=(X[:50], Y[:40]), callbacks=[cb])
    except ValueError:
        active = mlflow.active_run()
        status = mlflow.MlflowClient().get_run(cb.session.run_id).info.status
        with mlflow.start_run() as mine:
            mlflow.log_param("trial", "1")
    return {"run_id": cb.session.run_id, "active_in_except": active.info.run_id if active else None,
            "status_in_except": status, "mine": mine.info.run_id}


class FailsAtIndex(keras.utils.PyDataset):
    """``n`` batches of 64; reading batch ``index`` raises (a corrupt shard)."""

    def __init__(self, n: int, index: int) -> None:
        super().__init__()
        self.n, self.index = n, index

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if i == self.index:
            raise OSError("corrupt shard")
        return X[i * 64 : (i + 1) * 64], Y[i * 64 : (i + 1) * 64]


class RaiseAtTestBatchEnd(keras.callbacks.Callback):
    def __init__(self, batch: int) -> None:
        super().__init__()
        self.batch = batch

    def on_test_batch_end(self, batch, logs=None):
        if batch == self.batch:
            raise RuntimeError("cannot write the validation's log")


@case("validation_cut_short")
def _(out: Path):
    """A validation (and an evaluate alone) that fails after some of its batches: their samples are counted, as
    their energy is billed to it — its input failing at its 4th batch (3 of 64 done), another callback raising
    after its 2nd (2 of 64 done)."""
    seen = {}
    for name, validation, extra in (("input_fails", FailsAtIndex(5, 3), []),
                                    ("callback_raises", (X[:256], Y[:256]), [RaiseAtTestBatchEnd(1)])):
        cb = GreenCallback()
        try:
            mlp().fit(X, Y, epochs=2, batch_size=64, verbose=0, validation_data=validation, callbacks=[cb, *extra])
        except Exception as exc:  # noqa: BLE001
            seen[name] = {"raised": type(exc).__name__, "run_id": cb.session.run_id}
    cb = GreenCallback()
    try:
        mlp().evaluate(X[:256], Y[:256], batch_size=64, verbose=0, callbacks=[cb, RaiseAtTestBatchEnd(1)])
    except Exception as exc:  # noqa: BLE001
        seen["evaluate_alone"] = {"raised": type(exc).__name__, "run_id": cb.session.run_id}
    return seen


@case("keyboard_interrupt_in_a_callback")
def _(out: Path):
    return failing_fit(GreenCallback(), RaiseAtEpochEnd(KeyboardInterrupt(), epoch=0))


@case("broken_input_pipeline")
def _(out: Path):
    return failing_fit(GreenCallback(), x=Batches(5, fail_at=7))


@case("exception_in_the_users_run")
def _(out: Path):
    with mlflow.start_run() as users:
        out = failing_fit(GreenCallback(), RaiseAtEpochEnd(RuntimeError("callback bug"), epoch=0))
        still_active = mlflow.active_run().info.run_id if mlflow.active_run() else None
    return {**out, "users_run_id": users.info.run_id, "still_active": still_active}


@case("exception_in_the_first_epoch")
def _(out: Path):
    # 3 of the first epoch's 10 batches of 64 trained, then a callback raises: 192 samples
    return failing_fit(GreenCallback(), RaiseAtBatchEnd(RuntimeError("callback bug"), epoch=0, batch=2))


@case("a_batch_the_step_cannot_train")
def _(out: Path):
    # batches 0-2 trained, then the step raises on batch 3 (read, never trained): 192 samples
    return failing_fit(GreenCallback(), x=Batches(10, untrainable=3), shuffle=False)


class StepFails(keras.Sequential):
    """Its train step raises on the ``fail_at``-th batch (run eagerly: the step runs in Python each batch)."""

    def __init__(self, layers, fail_at: int) -> None:
        super().__init__(layers)
        self.fail_at, self.calls = fail_at, 0

    def train_step(self, *args):
        self.calls += 1
        if self.calls == self.fail_at:
            raise ValueError("this batch cannot be trained")
        return super().train_step(*args)


class TrainOnBatch(keras.callbacks.Callback):
    """Trains the model on one more batch of its own (``train_on_batch``) at the end of the fit's second batch."""

    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            self.model.train_on_batch(X[:64], Y[:64])


def _step_fails_over_arrays(fail_at: int, *callbacks) -> dict:
    model = StepFails([keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10, activation="softmax")], fail_at)
    model.compile("adam", "sparse_categorical_crossentropy", run_eagerly=True)
    cb, clock = GreenCallback(), Clock()
    try:
        model.fit(X, Y, epochs=3, batch_size=64, verbose=0, callbacks=[clock, cb, *callbacks])
        raised = None
    except ValueError as exc:
        raised = type(exc).__name__
    return {"raised": raised, "run_id": cb.session.run_id, "batch_ends": clock.batch_ends}


@case("a_step_that_raises_over_arrays")
def _(out: Path):
    # arrays (whose batching is known: torch and JAX count the batches read, not each one's samples): batches 0-2
    # trained, then the step raises on batch 3 (read, never trained): 192 samples
    return _step_fails_over_arrays(4)


@case("a_step_that_raises_over_arrays_after_a_train_on_batch")
def _(out: Path):
    # the same, a callback's train_on_batch (the step's third call) after batch 1: its rows are not the fit's, and the
    # batch whose step raised (the fifth call) is still not counted: 192 samples
    return _step_fails_over_arrays(5, TrainOnBatch())


@case("exception_in_a_later_epoch")
def _(out: Path):
    # a whole epoch (640) and 3 batches of the second (192): 832 samples, not the first epoch's 640
    return failing_fit(GreenCallback(), RaiseAtBatchEnd(RuntimeError("callback bug"), epoch=1, batch=2))


@case("budget_stop_mid_epoch")
def _(out: Path):
    # 1 kJ per counter read: start, epoch begin, then the first in-epoch check (after 2 s) is over 1.5 kJ
    cb, clock = GreenCallback(meters=[PerReadMeter(1000.0)], max_energy_kwh=1500 / 3.6e6), Clock()
    history = mlp().fit(Batches(30, sleep_s=0.1), epochs=3, verbose=0, callbacks=[clock, cb])
    return {"run_id": cb.session.run_id, "epochs": len(history.history["loss"]), "batch_ends": clock.batch_ends}


class StopAtBatchEnd(RaiseAtBatchEnd):
    """Sets ``stop_training`` after ``batch`` of ``epoch``: Keras ends the fit cleanly inside that epoch."""

    def __init__(self, *, epoch: int, batch: int) -> None:
        super().__init__(RuntimeError("unused"), epoch=epoch, batch=batch)

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            self.model.stop_training = True


@case("samples_per_epoch_cut_short")
def _(out: Path):
    # samples_per_epoch=640 (10 batches of 64); the second epoch stopped after 3 batches: 640 + 192 trained
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})], samples_per_epoch=640)
    mlp().fit(Batches(10), epochs=3, verbose=0, callbacks=[cb, StopAtBatchEnd(epoch=1, batch=2)])
    return {"run_id": cb.session.run_id, "train": cb.session.samples.get("train")}


@case("samples_per_epoch_failed_mid_epoch")
def _(out: Path):
    # samples_per_epoch=320 (the user's count: not the 640 rows of 10 batches); the second epoch ends part-way — a
    # callback raises after 3 trained batches, a KeyboardInterrupt from a callback there, the step fails on the 14th
    # batch read, the input fails reading it: 320 + the option's share of the batches trained, as for a clean stop there
    # (320 + 96 after 3 of 10) — not 320 + the rows read. Keras reads before the first epoch (TensorFlow 2 batches for
    # its data spec, torch and JAX 1 to build the metrics): the 14th read is the second epoch's 2nd batch on TensorFlow,
    # its 3rd on torch and JAX. TensorFlow reads the input inside its step: the "step" way fails there as an input error
    class Trained(keras.callbacks.Callback):  # listed first: the batches whose step completed, in the epoch that failed
        def on_epoch_begin(self, epoch, logs=None):
            self.batches = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

    class UntrainableFourteenth(Batches):  # the 14th read (see above: the second epoch's 2nd or 3rd batch) no step can train
        def __getitem__(self, i: int):
            x, y = super().__getitem__(i)
            return (x[:, :60], y) if self.reads == 14 else (x, y)

    ways = {"callback": (Batches(10), [RaiseAtBatchEnd(RuntimeError("callback bug"), epoch=1, batch=2)]),
            "ctrl_c": (Batches(10), [RaiseAtBatchEnd(KeyboardInterrupt(), epoch=1, batch=2)]),
            "step": (UntrainableFourteenth(10), []), "input": (Batches(10, fail_at=13), [])}
    results = {}
    for way, (data, others) in ways.items():
        cb, trained = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})], samples_per_epoch=320), Trained()
        try:
            mlp().fit(data, epochs=3, verbose=0, shuffle=False, callbacks=[trained, cb, *others])
            raised = None
        except BaseException as exc:  # noqa: BLE001 - reported
            raised = type(exc).__name__
        results[way] = {"run_id": cb.session.run_id, "train": cb.session.samples.get("train"), "raised": raised,
                        "trained_batches": trained.batches}
    return results


def endless():
    """64-sample batches without end (a Python generator: no size known, the epochs set by ``steps_per_epoch``)."""
    i = 0
    while True:
        j = (i * 64) % 576
        i += 1
        yield X[j : j + 64], Y[j : j + 64]


class EvaluatesInside(keras.callbacks.Callback):
    """Runs ``model.evaluate`` on 128 samples (with ``callbacks``) after training ``batch`` of each epoch, or at its
    ``on_epoch_end`` / ``on_epoch_begin`` (``batch`` "end" / "begin": listed before GreenCallback); trains 50 ms at
    each batch end after a mid-epoch one; stops the fit after batch ``stop_at`` of epoch 1."""

    def __init__(self, batch: int | str, callbacks=(), stop_at: int | None = None, *, bound: bool = False,
                 on_batch: bool = False) -> None:
        super().__init__()
        self.batch, self.callbacks, self.stop_at, self.epoch, self.after = batch, list(callbacks), stop_at, 0, False
        self.bound, self.bound_evaluate, self.on_batch = bound, None, on_batch  # on_batch: test_on_batch, not evaluate

    def set_model(self, model):  # (before the fit's on_train_begin) ``bound``: its evaluate taken now, as a user's
        super().set_model(model)  # callback may, so that the fit's wrapper of ``evaluate`` is never called
        self.bound_evaluate = model.evaluate if self.bound else None

    def evaluate(self):
        model = self.model  # (on JAX, the model's state synced back: an evaluate before then fails, with or without us)
        if self.on_batch:  # (Keras resets the metrics here too, the loss tracker's count with them)
            return model.test_on_batch(X[:64], Y[:64])
        evaluate = self.bound_evaluate or model.evaluate
        evaluate(X[:128], Y[:128], batch_size=64, verbose=0, callbacks=self.callbacks)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.after = epoch, False
        if self.batch == "begin":
            self.evaluate()

    def on_train_batch_end(self, batch, logs=None):
        if self.after:
            time.sleep(0.05)  # the epoch's training after the evaluation (not "other")
        if batch == self.batch:
            self.evaluate()
            self.after = True
        if self.stop_at is not None and self.epoch == 1 and batch == self.stop_at:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.batch == "end":
            self.evaluate()


@case("evaluations_inside_epochs")
def _(out: Path):
    """An evaluate inside an epoch resets Keras's loss tracker (the train step's sample count) on TensorFlow, and one
    with the fit's callback was taken as the epoch's end: the epoch's samples were read at it (the batches after it
    lost), the training after it billed to ``other``, and its samples read from the fit's own validation input."""
    results = {}
    for name, kwargs in (("with_ours_mid_epoch", {"batch": 3, "with_ours": True}), ("plain_mid_epoch", {"batch": 3}),
                         ("plain_at_epoch_end", {"batch": "end"}), ("plain_at_epoch_begin", {"batch": "begin"}),
                         ("plain_then_stopped", {"batch": 3, "stop_at": 6}),
                         ("with_ours_beside_validation", {"batch": 3, "with_ours": True, "validation": True}),
                         ("test_on_batch_mid_epoch", {"batch": 3, "on_batch": True})):
        cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
        inside = EvaluatesInside(kwargs["batch"], [cb] if kwargs.get("with_ours") else [], kwargs.get("stop_at"),
                                 on_batch=kwargs.get("on_batch", False))
        callbacks = [inside, cb] if isinstance(kwargs["batch"], str) else [cb, inside]
        validation = {"validation_data": (X[:64], Y[:64])} if kwargs.get("validation") else {}
        mlp().fit(endless(), steps_per_epoch=10, epochs=2, verbose=0, callbacks=callbacks, **validation)
        results[name] = {"run_id": cb.session.run_id, "samples": dict(cb.session.samples)}
    # the same with the evaluate bound before the fit (the fit's wrapper bypassed), on an input of known size (the
    # loss tracker's count, which that evaluate resets unseen on TensorFlow, is not read)
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    mlp().fit(X[:640], Y[:640], batch_size=64, epochs=2, verbose=0, callbacks=[cb, EvaluatesInside(3, [cb], bound=True)])
    results["with_ours_bound_before_the_fit"] = {"run_id": cb.session.run_id, "samples": dict(cb.session.samples)}
    return results


@case("validation_input_fails_after_an_evaluate_inside_the_epoch")
def _(out: Path):
    """A mid-epoch evaluate with the fit's callback took the watch meant for the fit's validation input: a validation
    input failing afterwards ended the run only at the fit watch's next look (RUNNING when fit raised, on torch)."""
    cb, model = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})]), mlp()
    try:
        model.fit(Batches(10), validation_data=Batches(4, fail_at=2), epochs=2, verbose=0,
                  callbacks=[cb, EvaluatesInside(3, [cb])])
        raised = None
    except BaseException as exc:  # noqa: BLE001
        raised = type(exc).__name__
    run = mlflow.MlflowClient().get_run(cb.session.run_id)
    return {"run_id": cb.session.run_id, "raised": raised, "status": run.info.status,
            "evaluate_wrapped": "evaluate" in model.__dict__}


@case("validation_input_fails_at_the_next_epochs_first_batch")
def _(out: Path):
    """No step of the failed validation finished: it evaluated nothing (on JAX the synced loss tracker held the
    epoch's training count, which was counted as validation: 896 for 256)."""
    cb, validation = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})]), Batches(4)

    class FailsFromEpochOne(keras.callbacks.Callback):  # (a count of reads would not do: TensorFlow peeks at one)
        def on_epoch_begin(self, epoch, logs=None):
            validation.fail_at = 0 if epoch >= 1 else None

    try:
        mlp().fit(Batches(10), validation_data=validation, epochs=2, verbose=0, callbacks=[cb, FailsFromEpochOne()])
    except Exception:  # noqa: BLE001 (OSError; TensorFlow: UnknownError, raised from its input graph)
        pass
    return {"run_id": cb.session.run_id, "samples": dict(cb.session.samples),
            "status": mlflow.MlflowClient().get_run(cb.session.run_id).info.status}


class CutsEpochOne(keras.callbacks.Callback):
    """Sets ``stop_training`` (``how`` "stop") or raises after batch 4 of epoch 1: 5 of its 10 batches trained."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how, self.epoch = how, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch == 4:
            if self.how == "raise":
                raise RuntimeError("cut")
            self.model.stop_training = True


def first_rows(n: int, *, pair: bool = False):
    """The first ``n`` rows in 64-row batches (a generator: no size known); ``pair``: inputs alone, as predict's."""
    for i in range(0, n, 64):
        yield (X[i : min(i + 64, n)],) if pair else (X[i : min(i + 64, n)], Y[i : min(i + 64, n)])


@case("steps_that_count_no_samples")
def _(out: Path):
    """A ``train_step`` / ``test_step`` of the user's own whose loss tracker counts no samples: an epoch cut short
    counted the whole epoch (stop) or none of it (raise) on TensorFlow; validation and evaluate samples were the
    batches' count (4 for 200) everywhere. A batch holding a tuple inside a dict counted 0 rows (torch, JAX: the
    samples of a cut epoch; TensorFlow: predict's rows)."""
    from keras_own_steps import PairOut, own_steps_model

    def green():
        return GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])

    def ended(cb, **more):
        status = mlflow.MlflowClient().get_run(cb.session.run_id).info.status
        stacks = {"writer_stacks": writer_stacks()} if status == "RUNNING" else {}  # a fit's end that did not get through
        return {"run_id": cb.session.run_id, "samples": dict(cb.session.samples), "status": status, **more, **stacks}

    results = {}
    for how in ("stop", "raise"):
        for pair in (False, True):
            cb = green()
            x = {"pair": (X[:, :32], X[:, 32:])} if pair else X
            try:
                own_steps_model(pair_input=pair).fit(x, Y, batch_size=64, epochs=3, verbose=0, callbacks=[CutsEpochOne(how), cb])
            except RuntimeError:
                pass
            results[f"{how}_pair" if pair else how] = ended(cb)
    model, cb, evaluated = own_steps_model(), green(), green()
    model.fit(X, Y, batch_size=64, epochs=1, verbose=0, validation_data=first_rows(200), validation_steps=4, callbacks=[cb])
    model.evaluate(first_rows(200), verbose=0, callbacks=[evaluated])
    results["own_test_step"] = ended(cb, test=ended(evaluated))
    predicted = green()
    PairOut().predict(first_rows(200, pair=True), verbose=0, callbacks=[predicted])
    results["pair_output"] = ended(predicted)
    return results


@case("torch_iterable_validation")
def _(out: Path):
    # torch: DataLoaders over an IterableDataset (no length; its last batch partial): the rows, not batches x size
    if keras.backend.backend() != "torch":
        return {"skipped": "torch only"}
    import torch
    from torch.utils.data import DataLoader, IterableDataset

    class Rows(IterableDataset):
        def __init__(self, n: int) -> None:
            self.n = n

        def __iter__(self):
            return ((torch.from_numpy(X[i]), torch.tensor(Y[i])) for i in range(self.n))

    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    mlp().fit(DataLoader(Rows(300), batch_size=64), validation_data=DataLoader(Rows(100), batch_size=64), epochs=2,
              verbose=0, callbacks=[cb])
    mlp().evaluate(DataLoader(Rows(100), batch_size=64), verbose=0, callbacks=[evaluated := GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])])
    return {"run_id": cb.session.run_id, "samples": cb.session.samples, "test": evaluated.session.samples}


@case("validation_loader_of_known_size_fails")
def _(out: Path):
    # a DataLoader of known size (2 batches of 64) as validation data fails at the second batch of epoch 1's validation:
    # JAX reads it inside the guarded test step (nothing wraps it), torch and TensorFlow through the watched iterator
    import torch
    from torch.utils.data import DataLoader, Dataset

    class Rows(Dataset):
        epoch = -1  # as the fit's last epoch began (TensorFlow reads a batch ahead, and one before the fit)

        def __len__(self) -> int:
            return 128

        def __getitem__(self, i: int):
            if Rows.epoch == 1 and i >= 64:
                raise OSError("corrupt validation shard")
            return torch.from_numpy(X[i]), torch.tensor(Y[i])

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            Rows.epoch = epoch

    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    try:
        mlp().fit(X[:256], Y[:256], batch_size=64, epochs=3, validation_data=DataLoader(Rows(), batch_size=64), verbose=0,
                  callbacks=[Epochs(), cb])
        raised = None
    except Exception as exc:  # TensorFlow reads it in tf.data: an UnknownError carrying the OSError
        raised = type(exc).__name__ + ("(OSError)" if "corrupt validation shard" in str(exc) else "")
    return {"run_id": cb.session.run_id, "samples": cb.session.samples, "raised": raised,
            "active_after": mlflow.active_run().info.run_id if mlflow.active_run() else None}


@case("input_wait")
def _(out: Path):
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})])
    mlp().fit(Batches(8, sleep_s=0.05), epochs=2, verbose=0, callbacks=[cb])
    return {"run_id": cb.session.run_id}


@case("evaluate_and_predict")
def _(out: Path):
    cb = GreenCallback()
    model = mlp()
    model.fit(X, Y, validation_data=(X[:128], Y[:128]), epochs=2, batch_size=64, verbose=0, callbacks=[cb])
    model.evaluate(X[:200], Y[:200], batch_size=50, verbose=0, callbacks=[cb])
    model.predict(X[:100], batch_size=50, verbose=0, callbacks=[cb])
    return {"run_id": cb.session.run_id}


@case("async_batch_hooks")
def _(out: Path):
    """Keras dispatches the batch hooks of a callback list asynchronously on torch and JAX when every
    callback's do nothing: GreenCallback's do nothing and must not turn that off."""
    lists = {name: keras.callbacks.CallbackList(callbacks, add_history=True, model=mlp())
             for name, callbacks in (("without", []), ("with", [GreenCallback()]))}
    return {name: [cl._async_train, cl._async_test, cl._async_predict] for name, cl in lists.items()}


class ListSeen(keras.callbacks.Callback):
    """Notes which callbacks the fit's list holds at each batch and epoch end, and whether ``logs`` had the live figures."""

    def __init__(self) -> None:
        super().__init__()
        self.listed: keras.callbacks.CallbackList | None = None
        self.at_batches: set[tuple[str, ...]] = set()
        self.at_epoch_ends: list[list] = []  # [callbacks listed, live figures in logs] (as JSON gives them back)

    def names(self) -> tuple[str, ...]:
        return tuple(type(cb).__name__ for cb in self.listed.callbacks)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.at_batches.add(self.names())

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.at_batches.add(self.names())

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.at_epoch_ends.append([list(self.names()), "green/energy_kwh" in (logs or {})])


class OwnBatchHook(GreenCallback):
    """A subclass with a batch hook of its own: called at every batch, as any callback's."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_ends = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.batch_ends += 1


@case("batch_hooks_skip_ours")
def _(out: Path):
    """GreenCallback does nothing per batch: the fit's batch hooks call the other callbacks only; every other hook
    sees the whole list in its order (a callback after ours reads the live figures); the list is whole after the
    fit, and after a fit that fails inside an epoch."""
    before, after, cb = ListSeen(), ListSeen(), GreenCallback()
    listed = keras.callbacks.CallbackList([before, cb, after], add_history=True, model=mlp(), epochs=2)
    before.listed = after.listed = listed
    listed.model.fit(X, Y, validation_data=(X[:128], Y[:128]), epochs=2, batch_size=64, verbose=0, callbacks=listed)
    failing, failed = ListSeen(), GreenCallback()
    failing.listed = keras.callbacks.CallbackList(
        [failed, failing, RaiseAtBatchEnd(RuntimeError("loss exploded"), epoch=1, batch=2)], add_history=True, model=mlp(),
        epochs=3)
    try:
        failing.listed.model.fit(X, Y, epochs=3, batch_size=64, verbose=0, callbacks=failing.listed)
    except RuntimeError:
        pass
    own = OwnBatchHook()
    mlp().fit(X, Y, epochs=2, batch_size=64, verbose=0, callbacks=[own])
    return {"at_batches": sorted(map(list, before.at_batches | after.at_batches)), "before": before.at_epoch_ends,
            "after": after.at_epoch_ends, "listed_after": list(before.names()), "run_id": cb.session.run_id,
            "failed_run_id": failed.session.run_id, "failing_batches": sorted(map(list, failing.at_batches)),
            "failing_after": list(failing.names()),
            "own_batch_ends": own.batch_ends, "own_run_id": own.session.run_id}


def _wrapped_left(callback: keras.callbacks.Callback) -> list[str]:
    """The hooks of ``callback`` still wrapped by a guard after its call ended (none may be)."""
    return [name for name in dir(callback) if name.startswith("on_")
            and getattr(getattr(callback, name, None), "_green_guard", None) is not None]


class LegacyBatchEnd(keras.callbacks.Callback):
    """Overrides the legacy ``on_batch_end`` (Keras's ``on_train_batch_end`` calls it): raises at the 3rd batch of epoch 1."""

    def __init__(self) -> None:
        super().__init__()
        self.ends = 0

    def on_batch_end(self, batch, logs=None):
        self.ends += 1
        if self.ends == 13:
            raise RuntimeError("a metrics push failed")


class ValidationBatchFails(keras.callbacks.Callback):
    def on_test_batch_end(self, batch, logs=None):
        raise RuntimeError("a validation hook failed")


@case("batch_hook_failures")
def _(out: Path):
    """Another callback's batch hook raising (its own hooks are wrapped, the list's are not): ended at that moment."""
    def at_batch_3(batch, logs=None):
        if batch == 3:
            raise ValueError("a lambda's bug")

    cases = {"lambda_at_batch_begin": (keras.callbacks.LambdaCallback(on_train_batch_begin=at_batch_3), {}),
             "legacy_on_batch_end": (LegacyBatchEnd(), {}),
             "validation_batch_end": (ValidationBatchFails(), {"validation_data": (X[:128], Y[:128])}),
             "interrupt_at_batch_end": (RaiseAtBatchEnd(KeyboardInterrupt(), epoch=1, batch=4), {})}
    results = {}
    for name, (failing, kwargs) in cases.items():
        results[name] = {**failing_fit(GreenCallback(), failing, **kwargs), "wrapped_left": _wrapped_left(failing)}
    return results


@case("inspect_pruned")
def _(out: Path):
    """A conv net with a zeroed filter, a zeroed Dense unit and a bfloat16 layer, inspected (no fit): the
    variables are read the backend's own way (TensorFlow: one identity_n; JAX: a host view; torch: the CPU
    storage, bfloat16 through Keras), and the figures must be the same on every backend."""
    import numpy as np

    from mlflow_green.training.inspectors import inspect_model

    x = keras.Input((8, 8, 1))
    conv, dense, low = keras.layers.Conv2D(4, 3), keras.layers.Dense(6), keras.layers.Dense(3, dtype="bfloat16")
    model = keras.Model(x, low(dense(keras.layers.Flatten()(conv(x)))))
    # JAX draws bfloat16 initial weights on a coarse grid: one in five such kernels holds an exact zero
    low.set_weights([np.linspace(0.25, 1.0, 18).reshape(6, 3), np.zeros(3)])
    kernel, bias = conv.get_weights()
    kernel[..., 1] = 0.0  # 1 of 4 filters
    conv.set_weights([np.where(kernel == 0, 0.0, kernel + 1e-3).astype("float32"), bias])
    kernel, bias = dense.get_weights()
    kernel[:, 2] = 0.0  # 1 of 6 units
    dense.set_weights([kernel, bias])
    profile = inspect_model(model)
    fields = ("params", "params_nonzero", "sparsity", "structured_sparsity", "size_bytes", "flops_per_sample", "weight_bits")
    return {name: getattr(profile, name) for name in fields}


@case("inspect_mobilenet_v2")
def _(out: Path):
    """keras.applications.MobileNetV2 at 224 (random weights): docs/schema.md's figures on every backend."""
    from mlflow_green.training.inspectors import inspect_model

    profile = inspect_model(keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3)))
    return {"params": profile.params, "flops_per_sample": profile.flops_per_sample}


@case("ctrl_c_dropped_inside_the_fit")
def _(out: Path):
    """A real Ctrl-C that code inside the fit catches and drops (Keras's own code has bare ``except:`` blocks): raised
    again at the fit's next hook; no batch begins after it."""
    batches: list[tuple[int, int]] = []

    class Swallows(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            batches.append((self.epoch, batch))

        def on_train_batch_end(self, batch, logs=None):
            if (self.epoch, batch) == (1, 1):
                try:
                    signal.raise_signal(signal.SIGINT)
                except:  # noqa: E722 - as Keras's own code does
                    pass

    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 10.0})])
    handler_before = repr(signal.getsignal(signal.SIGINT))
    try:
        mlp().fit(X, Y, epochs=3, batch_size=64, verbose=0, callbacks=[cb, Swallows()])
        raised = None
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        raised = f"{type(exc).__name__}: {exc}"[:200]
    return {"raised": raised, "last_batch": list(batches[-1]), "status": mlflow.MlflowClient().get_run(cb.session.run_id).info.status,
            "active_after": mlflow.active_run() is not None, "handler_back": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
            "handler_before": handler_before}


@case("log_model_from_another_thread_during_a_fit")
def _(out: Path):
    # cb.log_model() (the last measured model) called again and again from this thread while a fit with the same
    # callback trains in another: on JAX its state synced from here was taken from under the fit's step (the fit
    # failed: "Buffer has been deleted or donated"); on TensorFlow a call as the fit ended sent its last step twice
    import threading

    cb, model = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})]), mlp()
    model.fit(X, Y, epochs=1, batch_size=64, verbose=0, callbacks=[cb])  # the callback has measured this model
    ended: dict[str, str | None] = {}

    def fit() -> None:
        try:
            model.fit(X, Y, epochs=6, batch_size=16, verbose=0, callbacks=[cb])
            ended["raised"] = None
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            ended["raised"] = f"{type(exc).__name__}: {exc}"[:300]

    thread = threading.Thread(target=fit)
    thread.start()
    logged = 0
    while thread.is_alive():
        cb.log_model()
        logged += 1
        time.sleep(0.02)
    thread.join()
    return {"raised": ended.get("raised", "no result"), "logged": logged, "run_id": cb.session.run_id}


if __name__ == "__main__":
    backend, out = sys.argv[1], Path(sys.argv[2])
    assert keras.backend.backend() == backend
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(backend, artifact_location=(out / "art").as_uri()))
    (out / "result.json").write_text(json.dumps(run_cases(out)))
    # The exit handlers run (ours and MLflow's), then the process ends without the interpreter's own finalization: on
    # torch it once ended in SIGSEGV there, after every case had run and written its result (1 run in ~10 on
    # 2026-12-06, not reproduced under faulthandler in 5 more; not diagnosed — see the stop's note).
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

