"""Errors raised in Keras's own threads on torch and JAX — a callback that says ``async_safe`` (Keras 3 runs its
batch-end hooks in a thread pool) raising there, a ``PyDataset``'s worker failing — end the call's run at once:
``FAILED``, ``KILLED`` for ``KeyboardInterrupt``, before the user's ``except`` block runs, Ctrl-C and SIGTERM given back.

Before, the error came out in the training thread a step later (the callback list's batch hook; the dataset adapter's
epoch end, stopping its worker pool), where nothing of ours looked: the run stayed ``RUNNING`` and MLflow's active run until the fit watch's next look (a
``mlflow.start_run()`` in the user's ``except`` block raised "Run ... is already active"), our SIGINT handler left in
place.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("keras")

SCRIPT = textwrap.dedent("""
    import json, os, signal, sys, time
    os.environ["KERAS_BACKEND"] = sys.argv[1]
    import keras, mlflow, numpy as np
    from mlflow_green.integrations.keras import GreenCallback
    from mlflow_green.testing import FakeMeter
    mlflow.set_tracking_uri(sys.argv[2])
    x, y = np.random.rand(128, 8).astype("float32"), np.random.randint(0, 3, 128)
    ERRORS = {"ValueError": ValueError("boom"), "KeyboardInterrupt": KeyboardInterrupt(), "SystemExit": SystemExit(3)}

    class Raiser(keras.callbacks.Callback):
        async_safe = True  # its batch-end hooks dispatched to Keras's thread pool (torch, JAX)

        def __init__(self, hook, kind):
            super().__init__()
            self.hook, self.kind, self.epoch = hook, kind, 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.hook == "train" and self.epoch == 1 and batch == 3:
                raise ERRORS[self.kind]

        def on_test_batch_end(self, batch, logs=None):
            if (self.hook == "test" and self.epoch == 1 or self.hook == "evaluate") and batch == 1:
                raise ERRORS[self.kind]

        def on_predict_batch_end(self, batch, logs=None):
            if self.hook == "predict" and batch == 1:
                raise ERRORS[self.kind]

    class Shards(keras.utils.PyDataset):  # read by two worker threads; the 12th read fails (the second epoch)
        def __init__(self):
            super().__init__(workers=2)
            self.reads = 0

        def __len__(self):
            return 8

        def __getitem__(self, i):
            self.reads += 1
            if self.reads == 12:
                raise ValueError("bad shard")
            return x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]

    seen = {}
    for hook, kind in (("train", "ValueError"), ("train", "KeyboardInterrupt"), ("train", "SystemExit"),
                       ("test", "ValueError"), ("evaluate", "ValueError"), ("predict", "KeyboardInterrupt"),
                       ("workers", "ValueError")):
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(3, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        cb = GreenCallback(meters=[FakeMeter({"cpu:0": 45.0, "ram:0": 5.0})])
        start_s = time.monotonic()
        try:
            if hook == "evaluate":
                model.evaluate(x, y, batch_size=16, verbose=0, callbacks=[cb, Raiser(hook, kind)])
            elif hook == "predict":
                model.predict(x, batch_size=16, verbose=0, callbacks=[cb, Raiser(hook, kind)])
            elif hook == "workers":
                model.fit(Shards(), epochs=3, verbose=0, callbacks=[cb])
            else:
                model.fit(x, y, validation_data=(x[:64], y[:64]), epochs=3, batch_size=16, verbose=0,
                          callbacks=[cb, Raiser(hook, kind)])
            raised = None
        except BaseException as exc:  # the user's except block
            raised = type(exc).__name__
            wall_s = time.monotonic() - start_s
            run = mlflow.MlflowClient().get_run(cb.session.run_id)
            with mlflow.start_run(run_name="failure-report"):  # raised "already active" before
                pass
            seen[f"{hook}-{kind}"] = {
                "raised": raised, "status": run.info.status, "active_after": mlflow.active_run() is not None,
                "sigint_back": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
                "sigterm_back": signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
                "duration_s": run.data.metrics.get("green/duration_s"), "wall_s": wall_s, "run_id": run.info.run_id,
                "metrics": sorted(run.data.metrics)}
    json.dump(seen, open(sys.argv[3], "w"))
""")


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_an_async_safe_callback_raising_in_a_batch_end_ends_the_run_before_the_users_except_block(
        backend: str, tmp_path: Path) -> None:
    pytest.importorskip(backend)
    out, uri = tmp_path / "seen.json", f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-c", SCRIPT, backend, uri, str(out)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    seen = json.loads(out.read_text())
    assert set(seen) == {"train-ValueError", "train-KeyboardInterrupt", "train-SystemExit", "test-ValueError",
                         "evaluate-ValueError", "predict-KeyboardInterrupt", "workers-ValueError"}, seen
    for case, result in seen.items():
        kind = case.split("-")[1]
        assert result["raised"] == kind, (case, result)
        assert result["status"] == ("FAILED" if kind == "ValueError" else "KILLED"), (case, result)
        assert not result["active_after"] and result["sigint_back"] and result["sigterm_back"], (case, result)
        if case.startswith(("evaluate", "predict")):  # an evaluation alone: its figures as it ended
            assert f"green/energy_{'test' if case.startswith('evaluate') else 'predict'}_kwh" in result["metrics"], (case, result)
        else:
            assert 0 < result["duration_s"] <= result["wall_s"], (case, result)

    from green_invariants import assert_green_invariants
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    for case, result in seen.items():
        if not case.startswith(("evaluate", "predict")):  # an evaluation's run: no epochs
            assert_green_invariants(result["run_id"], client, finished=False)
