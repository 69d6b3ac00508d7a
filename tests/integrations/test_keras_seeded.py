"""A seeded Keras fit trains the same with GreenCallback as without it: the run the callback starts inside the fit
draws its name from a generator of its own, not from Python's global ``random`` (which Keras shuffles a
``PyDataset``'s batches with; MLflow's store drew the name from it, shifting every shuffle after).

In a fresh process: a test worker's other threads (an earlier test's writer retrying against a stopped server, with
urllib3's jitter) draw from the global generator too."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("keras")

SCRIPT = textwrap.dedent("""
    import json, sys
    import keras, mlflow, numpy as np
    from mlflow_green.integrations.keras import GreenCallback
    from mlflow_green.testing import FakeMeter
    mlflow.set_tracking_uri(sys.argv[1])

    class Batches(keras.utils.PyDataset):  # 15 batches, read in the order Keras shuffles them (recorded)
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(1)
            self.x, self.y = rng.random((15 * 16, 8), dtype=np.float32), rng.integers(0, 3, 15 * 16)
            self.order = []

        def __len__(self):
            return 15

        def __getitem__(self, i):
            self.order.append(i)
            return self.x[i * 16:(i + 1) * 16], self.y[i * 16:(i + 1) * 16]

    def fit(callbacks):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(3, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        data = Batches()
        history = model.fit(data, epochs=3, verbose=0, callbacks=callbacks)
        return data.order, [float(v) for v in history.history["loss"]]

    order, losses = fit([])
    green = GreenCallback(meters=[FakeMeter({"cpu:0": 45.0, "ram:0": 5.0})])  # no name: the run is named for it
    green_order, green_losses = fit([green])
    json.dump({"order": order, "losses": losses, "green_order": green_order, "green_losses": green_losses,
               "run_id": green.session.run_id}, open(sys.argv[2], "w"))
""")


def test_a_seeded_fit_shuffles_and_trains_the_same_with_the_callback(tmp_path: Path) -> None:
    out = tmp_path / "fits.json"
    done = subprocess.run([sys.executable, "-c", SCRIPT, f"sqlite:///{tmp_path / 'mlflow.db'}", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    fits = json.loads(out.read_text())
    assert fits["run_id"] is not None
    assert fits["green_order"] == fits["order"]
    assert fits["green_losses"] == pytest.approx(fits["losses"], rel=1e-6)
