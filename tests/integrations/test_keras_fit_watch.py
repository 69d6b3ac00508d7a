"""A Keras fit ended by an exception in Keras's own code is ended as it leaves (Keras's exception handler), or by the
thread watching it where Keras's traceback filtering is off; SIGTERM still works after either."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow import MlflowClient

pytest.importorskip("keras")

SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    os.environ["KERAS_BACKEND"] = "torch"
    import keras, mlflow, numpy as np
    from mlflow_green.integrations.keras import GreenCallback
    mlflow.set_tracking_uri(sys.argv[1])
    x, y = np.random.rand(64, 8).astype("float32"), np.random.randint(0, 2, 64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    cb = GreenCallback()
    try:  # inputs and targets of different lengths: Keras raises building the validation's iterator
        model.fit(x, y, validation_data=(x[:50], y[:40]), epochs=2, verbose=0, callbacks=[cb])
    except ValueError:
        pass
    deadline = time.monotonic() + 60  # the watching thread ends the measurement (and gives SIGTERM back) meanwhile
    while time.monotonic() < deadline:
        run_id = cb.session.run_id
        if run_id is not None and mlflow.MlflowClient().get_run(run_id).info.status != "RUNNING":
            break
        time.sleep(0.1)
    print("run", cb.session.run_id, "active", mlflow.active_run(), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    print("survived SIGTERM", flush=True)
""")


def test_after_the_watch_ended_a_failed_fit_sigterm_still_terminates(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-c", SCRIPT, uri], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "survived SIGTERM" not in done.stdout, done.stdout + done.stderr[-3000:]
    assert done.returncode == -signal.SIGTERM, done.stdout + done.stderr[-3000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("run ")]
    run_id = line.split()[1]
    assert line.endswith("active None"), line
    assert MlflowClient(uri).get_run(run_id).info.status == "FAILED"


def test_whether_the_fit_left_is_told_from_its_own_thread_and_from_another() -> None:
    import itertools
    import sys as _sys
    import threading

    from mlflow_green.integrations._fit_watch import FitWatch

    ended: list[BaseException] = []
    seen: dict[str, bool] = {}

    def fit() -> FitWatch:  # stands for Keras's fit: the watch holds its frame
        watch = FitWatch(_sys._getframe(), ended.append, itertools.count().__next__)  # steps always moving: no look ends it
        seen["inside, same thread"] = watch.left()
        other = threading.Thread(target=lambda: seen.__setitem__("inside, other thread", watch.left()))
        other.start()
        other.join()
        return watch

    watch = fit()
    seen["after, same thread"] = watch.left()
    other = threading.Thread(target=lambda: seen.__setitem__("after, other thread", watch.left()))
    other.start()
    other.join()
    watch.stop()
    seen["stopped"] = watch.left()
    assert seen == {"inside, same thread": False, "inside, other thread": False, "after, same thread": True,
                    "after, other thread": True, "stopped": False}
    assert ended == [], "asking never ends the fit; the guard does"


SLOW_END_SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    os.environ["KERAS_BACKEND"] = "torch"
    import keras, mlflow, numpy as np
    from mlflow_green.integrations._fit_watch import LOOK_INTERVAL_S
    from mlflow_green.integrations.keras import GreenCallback
    from mlflow_green.testing import FakeMeter

    class SlowToStop(FakeMeter):  # a device whose last read takes a while (a GPU driver under load)
        slow = threading.Event()
        def read(self, now_s):
            if self.slow.is_set() and threading.current_thread() is not threading.main_thread():
                print("ending on the watching thread", flush=True)
                time.sleep(3.0)
            return super().read(now_s)

    mlflow.set_tracking_uri(sys.argv[1])
    keras.config.disable_traceback_filtering()  # else the fit's run ends as Keras's handler sees the exception leave
    x, y = np.random.rand(64, 8).astype("float32"), np.random.randint(0, 2, 64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    cb = GreenCallback(meters=[SlowToStop({"cpu:0": 10.0})])
    try:  # Keras raises building the validation's iterator: the thread watching the fit ends it
        model.fit(x, y, validation_data=(x[:50], y[:40]), epochs=2, verbose=0, callbacks=[cb])
    except ValueError:
        SlowToStop.slow.set()
    time.sleep(2 * LOOK_INTERVAL_S + 1.0)  # the watch's looks: it is inside the slow last read now
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    print("survived SIGTERM", flush=True)
""")


def test_a_sigterm_while_the_watching_thread_ends_the_fit_waits_for_the_run_to_end(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-c", SLOW_END_SCRIPT, uri], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    out = done.stdout + done.stderr[-3000:]
    assert "ending on the watching thread" in done.stdout, out
    assert "survived SIGTERM" not in done.stdout, out
    assert done.returncode == -signal.SIGTERM, out
    [run] = MlflowClient(uri).search_runs(["0"])
    assert run.info.status == "FAILED", out  # ended by the watch, with its totals — not left RUNNING
    assert run.data.metrics["green/energy_kwh"] > 0
    assert "green.meters" in run.data.tags
