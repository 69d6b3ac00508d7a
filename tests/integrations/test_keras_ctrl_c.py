"""A real Ctrl-C (SIGINT) during a Keras fit ends the callback's run KILLED at once, wherever it lands.

On TensorFlow the KeyboardInterrupt usually surfaces in Keras's or TensorFlow's own code (the epoch's
input iterator being built, the step's dispatch), where no hook of the callback sees it: the run stayed
RUNNING and active for a second, then ended FAILED (7 interrupts in 8).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("keras")

SCRIPT = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    os.environ["KERAS_BACKEND"] = sys.argv[2]
    import keras, mlflow, numpy as np
    from mlflow_green.integrations.keras import GreenCallback
    mlflow.set_tracking_uri(sys.argv[1])
    # as at a terminal: an ignored SIGINT is inherited (Lightning, interrupted, ignores it from then on)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, f"SIGINT is {signal.getsignal(signal.SIGINT)}"
    x, y = np.random.rand(1280, 64).astype("float32"), np.random.randint(0, 10, 1280)
    seen = []
    for delay_s in (0.3, 0.67, 1.01, 1.43):
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        cb = GreenCallback()

        class CtrlC(keras.callbacks.Callback):  # a user's Ctrl-C, this long after the training began
            def on_train_begin(self, logs=None):
                threading.Timer(delay_s, os.kill, (os.getpid(), signal.SIGINT)).start()

        raised, started_s = None, time.monotonic()
        try:
            model.fit(x, y, validation_data=(x[:300], y[:300]), epochs=60, batch_size=32, verbose=0,
                      callbacks=[cb, CtrlC()])
            seen.append({"raised": None, "fit_s": time.monotonic() - started_s, "run_id": cb.session.run_id})  # Ctrl-C lost
        except KeyboardInterrupt:
            raised = "KeyboardInterrupt"
            active = mlflow.active_run()  # what the user's except block finds
            status = mlflow.MlflowClient().get_run(cb.session.run_id).info.status
            seen.append({"raised": raised, "status": status, "active": active.info.run_id if active else None,
                         "handler_back": signal.getsignal(signal.SIGINT) is signal.default_int_handler})
            if sys.argv[2] == "torch":  # a KeyboardInterrupt raised inside torch.no_grad's own enter or exit (Keras
                import torch  # enters one at each optimizer update, test step, variable assign) can leave grad mode off,
                torch.set_grad_enabled(True)  # with or without GreenCallback: the next fit's backward fails (docs/keras.md)
    json.dump(seen, open("result.json", "w"))
""")


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_ctrl_c_anywhere_in_a_fit_ends_its_run_killed_before_the_users_except_block(backend: str, tmp_path: Path) -> None:
    pytest.importorskip(backend)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-c", SCRIPT, uri, backend], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    seen = json.loads((tmp_path / "result.json").read_text())
    assert len(seen) == 4, (seen, done.stderr[-5000:])  # one entry per fit: a fit that returned lost its Ctrl-C
    for interrupt in seen:  # a lost Ctrl-C: the script's stderr says where Python dropped it, if it printed it
        assert interrupt == {"raised": "KeyboardInterrupt", "status": "KILLED", "active": None, "handler_back": True}, (
            seen, done.stderr[-5000:])


AT_BIND = textwrap.dedent("""
    import json, os, signal, sys, threading, traceback
    os.environ["KERAS_BACKEND"] = sys.argv[2]
    import keras, mlflow, numpy as np
    from mlflow_green.integrations.keras import GreenCallback
    from mlflow_green.testing import FakeMeter
    mlflow.set_tracking_uri(sys.argv[1])  # a fresh store: the first run takes a second or two to be created
    x, y = np.random.rand(256, 64).astype("float32"), np.random.randint(0, 10, 256)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    if sys.argv[4] == "warm":  # the power model resolved and cached first (else the meters' setup takes seconds too)
        from mlflow_green import EnergyTracker
        warm = EnergyTracker()
        warm.start(); warm.stop()

    class CtrlC(keras.callbacks.Callback):  # listed first: the Ctrl-C comes while ours binds its run
        def on_train_begin(self, logs=None):
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()

        on_test_end = on_train_begin  # an evaluate alone binds its run as it ends

    class Batches(keras.callbacks.Callback):  # listed after ours: the batches the fit began after the Ctrl-C
        begun = 0

        def on_train_batch_begin(self, batch, logs=None):
            Batches.begun += 1

    raised, in_hook = None, None
    try:
        if sys.argv[3] == "fit":
            model.fit(x, y, epochs=200, batch_size=32, verbose=0, callbacks=[CtrlC(), cb, Batches()])
        else:
            model.evaluate(x, y, batch_size=32, verbose=0, callbacks=[CtrlC(), cb])
    except KeyboardInterrupt as exc:
        raised = "KeyboardInterrupt"
        in_hook = [f.name for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith("integrations/keras.py")][-1:]
    runs = mlflow.MlflowClient().search_runs([e.experiment_id for e in mlflow.search_experiments()])
    json.dump({"raised": raised, "active": mlflow.active_run() is not None, "batches": Batches.begun, "in": in_hook,
               "runs": [[r.info.status, sorted(k for k in r.data.metrics if k.startswith("green/energy"))] for r in runs]},
              open("result.json", "w"))
""")


@pytest.mark.parametrize(("backend", "cache"), [("tensorflow", "warm"), ("torch", "warm"), ("jax", "cold")])
def test_ctrl_c_while_the_callback_binds_its_run_ends_it_killed(backend: str, cache: str, tmp_path: Path) -> None:
    """Ctrl-C as the fit starts, while the callback waits for MLflow to create its run: the run ends ``KILLED`` with
    its figures (TensorFlow, JAX: the interrupt came out of the wait, the run was left ``RUNNING`` for good, with
    none; torch: it was lost in a garbage-collector callback and the fit ran to its end), and the interrupt is raised
    from our ``on_train_begin``, no batch begun. It was delivered again a moment later, inside the first step: on JAX
    (here with nothing cached yet, the meters' setup taking seconds too) in its trace, where Keras's bare ``except:``
    (the inputs' structure check) swallowed it — the run ``KILLED``, the fit going on to its end (1 try in 4)."""
    pytest.importorskip(backend)
    seen = _interrupted_at_bind(tmp_path, backend, "fit", cache=cache)
    [(status, energies)] = seen["runs"]
    assert status == "KILLED" and "green/energy_kwh" in energies
    assert seen["batches"] == 0 and seen["in"] == ["on_train_begin"], seen


def test_ctrl_c_while_an_evaluate_logs_its_figures_reaches_the_user_after_them(tmp_path: Path) -> None:
    """An ``evaluate`` alone binds its run as it ends (a fresh store: a second or two): a Ctrl-C then came out of the
    wait — the run ``KILLED`` with no figures (``RUNNING`` before that, for good). The evaluation was over: its run is
    complete (``FINISHED``, its figures), and the ``KeyboardInterrupt`` is raised as the call ends, inside it."""
    [(status, energies)] = _interrupted_at_bind(tmp_path, "tensorflow", "evaluate", cache="warm")["runs"]
    assert status == "FINISHED" and "green/energy_test_kwh" in energies


def _interrupted_at_bind(tmp_path: Path, backend: str, call: str, *, cache: str) -> dict:
    """:data:`AT_BIND` run for ``call`` on a fresh store (``cache="cold"``: an empty cache directory): the
    ``KeyboardInterrupt`` reached the user, no run left active; what the script saw."""
    env = {**os.environ, "MLFLOW_GREEN_CACHE_DIR": str(tmp_path / "cache")} if cache == "cold" else None
    done = subprocess.run([sys.executable, "-c", AT_BIND, f"sqlite:///{tmp_path / 'mlflow.db'}", backend, call, cache],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    seen = json.loads((tmp_path / "result.json").read_text())
    assert seen["raised"] == "KeyboardInterrupt" and not seen["active"], seen
    return seen


def test_a_sigint_handler_of_the_users_own_is_left_alone(tmp_path: Path) -> None:
    from mlflow_green.training.interrupts import SigintWatch

    def graceful(signum: int, frame: object) -> None:  # a user's graceful stop: sets a flag, raises nothing
        return None

    previous = signal.signal(signal.SIGINT, graceful)
    try:
        watch = SigintWatch(lambda: None)
        watch.take()
        assert signal.getsignal(signal.SIGINT) is graceful and not watch.watching
        signal.signal(signal.SIGINT, signal.default_int_handler)
        watch.take()
        assert watch.watching and signal.getsignal(signal.SIGINT) == watch._handle
        watch.restore()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_the_framework_raises_as_another_error_reaches_the_user_as_keyboard_interrupt(mlflow_experiment: str) -> None:
    """TensorFlow's C code, handed the interrupt inside a Python callback of its own, raised ``SystemError: bad
    argument to internal function`` out of ``fit`` (seen in the suite): the user's ``except KeyboardInterrupt``
    missed it. The step here does what that C code does; the run still ends ``KILLED`` at the Ctrl-C."""
    import keras
    import mlflow
    import numpy as np

    from mlflow_green.integrations.keras import GreenCallback
    from mlflow_green.testing import FakeMeter

    class ConvertsCtrlC(keras.Sequential):
        steps = 0

        def train_step(self, data: object) -> object:
            type(self).steps += 1
            if type(self).steps == 3:
                try:
                    signal.raise_signal(signal.SIGINT)  # a real Ctrl-C, handled by Python here
                except KeyboardInterrupt:
                    raise SystemError("Objects/listobject.c:338: bad argument to internal function") from None
            return super().train_step(data)

    model = ConvertsCtrlC([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 10.0})])
    x, y = np.random.default_rng(0).random((64, 4)).astype("float32"), np.zeros(64, dtype="int64")
    with pytest.raises(KeyboardInterrupt) as raised:
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[cb])
    assert isinstance(raised.value.__cause__, SystemError)
    assert mlflow.MlflowClient().get_run(cb.session.run_id).info.status == "KILLED"
    assert mlflow.active_run() is None and signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("at_epoch", [1, 2], ids=["middle-epoch", "last-epoch"])
def test_a_ctrl_c_python_loses_in_a_garbage_collection_still_stops_the_fit(at_epoch: int, mlflow_experiment: str) -> None:
    """Python runs a SIGINT's handler wherever the main thread is — now and then inside a garbage collection's
    callback, where it prints "Exception ignored" and drops the ``KeyboardInterrupt`` after the handler ended the run
    ``KILLED``. Inside the epochs the next hook raises it again; in the last epoch's end no epoch hook followed and
    ``fit`` returned as if it had finished (seen on TensorFlow about 1 ms after the last epoch's hooks)."""
    import weakref

    import keras
    import mlflow
    import numpy as np

    from mlflow_green.integrations.keras import GreenCallback
    from mlflow_green.testing import FakeMeter

    begun: list[int] = []

    class LosesCtrlC(keras.callbacks.Callback):  # listed after ours: the epoch's hooks of ours are done
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            begun.append(epoch)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if epoch == at_epoch:
                class Collected:
                    pass

                doomed = Collected()
                self.ref = weakref.ref(doomed, lambda ref: signal.raise_signal(signal.SIGINT))
                del doomed  # its weakref's callback runs as it is freed: the KeyboardInterrupt there is dropped

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 10.0})])
    x, y = np.random.default_rng(0).random((64, 4)).astype("float32"), np.zeros(64, dtype="int64")
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, validation_data=(x[:16], y[:16]), epochs=3, batch_size=16, verbose=0, callbacks=[cb, LosesCtrlC()])
    assert begun == list(range(at_epoch + 1))  # no epoch after the Ctrl-C
    assert mlflow.MlflowClient().get_run(cb.session.run_id).info.status == "KILLED"
    assert mlflow.active_run() is None and signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("hook", ["on_test_batch_end", "on_test_end"])
def test_a_ctrl_c_in_the_last_epochs_validation_ends_the_run_killed(hook: str, mlflow_experiment: str) -> None:
    """A Ctrl-C from a callback listed before ours in the last epoch's validation: the watch put it off (it arrived
    under the wrapper counting evaluations in the fit, taken for our code), it came again in our fit's end, which
    held it — the run ended ``FINISHED`` and ``fit`` raised after it (3 of 3 on TensorFlow, torch and JAX)."""
    import keras
    import mlflow
    import numpy as np

    from mlflow_green.integrations.keras import GreenCallback
    from mlflow_green.testing import FakeMeter

    class CtrlC(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch

        def fire(self, *args: object, **kwargs: object) -> None:
            if self.epoch == 2:
                signal.raise_signal(signal.SIGINT)

    setattr(CtrlC, hook, CtrlC.fire)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 10.0})])
    x, y = np.random.default_rng(0).random((64, 4)).astype("float32"), np.zeros(64, dtype="int64")
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, validation_data=(x[:32], y[:32]), epochs=3, batch_size=16, verbose=0, callbacks=[CtrlC(), cb])
    assert mlflow.MlflowClient().get_run(cb.session.run_id).info.status == "KILLED"
    assert mlflow.active_run() is None and signal.getsignal(signal.SIGINT) is signal.default_int_handler



def test_a_ctrl_c_a_callback_catches_for_a_graceful_stop_is_left_caught(mlflow_experiment: str) -> None:
    """A callback that catches the ``KeyboardInterrupt`` and stops the training (``stop_training``): Keras ends the fit
    as for ``EarlyStopping``, every callback's ``on_train_end`` runs (a best-weights restore, a last checkpoint) and
    ``fit`` returns. The re-raise meant for an interrupt Python drops raised it at ``on_train_end`` instead."""
    import keras
    import mlflow
    import numpy as np

    from mlflow_green.integrations.keras import GreenCallback
    from mlflow_green.testing import FakeMeter

    ended: list[str] = []

    class GracefulStop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if epoch == 1:
                try:
                    signal.raise_signal(signal.SIGINT)
                except KeyboardInterrupt:
                    self.model.stop_training = True

        def on_train_end(self, logs: dict | None = None) -> None:
            ended.append("on_train_end")

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 10.0})])
    x, y = np.random.default_rng(0).random((64, 4)).astype("float32"), np.zeros(64, dtype="int64")
    try:
        history = model.fit(x, y, epochs=5, batch_size=16, verbose=0, callbacks=[cb, GracefulStop()])
    except KeyboardInterrupt:
        pytest.fail("fit raised the Ctrl-C that a callback caught")
    assert len(history.epoch) == 2 and ended == ["on_train_end"]
    assert mlflow.MlflowClient().get_run(cb.session.run_id).info.status == "KILLED"  # ended at the Ctrl-C
    assert mlflow.active_run() is None and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_that_code_inside_the_fit_catches_and_drops_is_raised_at_the_next_hook(mlflow_experiment: str) -> None:
    """A Ctrl-C caught by a bare ``except:`` inside the fit (Keras's own code has some, around the loss's structure
    checks it runs as it traces a step — on TensorFlow the validation's first: a suite run saw the fit go on to its end
    with its run ``KILLED``): raised again at the fit's next hook, no batch begun after it, ``fit`` raises it. A
    ``CallbackList`` of the user's that a Ctrl-C left armed is given back untouched to the next fit."""
    import keras
    import mlflow
    import numpy as np

    from mlflow_green.integrations.keras import GreenCallback
    from mlflow_green.testing import FakeMeter

    batches: list[tuple[int, int]] = []

    class Swallows(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch

        def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
            batches.append((self.epoch, batch))

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if (self.epoch, batch) == (1, 1):
                try:
                    signal.raise_signal(signal.SIGINT)
                except:  # noqa: E722 - as Keras's own code does
                    pass

    class Interrupts(keras.callbacks.Callback):
        epochs_ended = 0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.epochs_ended += 1

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if batch == 1 and not getattr(self, "done", False):
                self.done = True
                signal.raise_signal(signal.SIGINT)

    x, y = np.random.default_rng(0).random((64, 4)).astype("float32"), np.zeros(64, dtype="int64")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 10.0})])
    with pytest.raises(KeyboardInterrupt, match="raised again"):
        model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[cb, Swallows()])
    assert batches[-1] == (1, 1), batches  # the second epoch's third batch never began
    assert mlflow.MlflowClient().get_run(cb.session.run_id).info.status == "KILLED"
    assert mlflow.active_run() is None and signal.getsignal(signal.SIGINT) is signal.default_int_handler

    # a CallbackList of the user's: the Ctrl-C raised as usual; the same list in the next fit runs it to its end
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 10.0})])
    interrupts = Interrupts()
    callbacks = keras.callbacks.CallbackList([cb, interrupts], model=model)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=callbacks)
    interrupted, interrupts.epochs_ended = cb.session.run_id, 0
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=callbacks)
    assert interrupts.epochs_ended == 2
    client = mlflow.MlflowClient()
    assert client.get_run(interrupted).info.status == "KILLED" and client.get_run(cb.session.run_id).info.status == "FINISHED"
