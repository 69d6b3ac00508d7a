"""mlflow_green.autolog() next to MLflow's own autologging, in either order, in fresh processes
(as a user's script runs): one run, MLflow's metrics and ours, no key logged twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_green.record import schema

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("autolog_scenario.py")
MLFLOW_KEYS = {  # what MLflow's autologging logs for each framework's tiny training
    "keras": {"loss", "val_loss", "accuracy"},
    "lightning": {"train_loss", "val_acc"},
    "transformers": {"eval_accuracy", "loss", "train_runtime"},
}


@pytest.mark.parametrize("framework", ["keras", "lightning", "transformers"])
def test_one_run_with_both_and_no_key_twice_in_either_order(framework: str, tmp_path: Path) -> None:
    pytest.importorskip(framework)
    done = subprocess.run([sys.executable, str(SCRIPT), framework, str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    for order in ("mlflow-first", "green-first"):
        _check(framework, result[order])


def _check(framework: str, runs: list[dict]) -> None:
    [run] = runs
    assert run["status"] == "FINISHED"
    histories = run["histories"]
    assert MLFLOW_KEYS[framework] <= set(histories), sorted(histories)
    assert [step for step, _ in histories[schema.EPOCH_ENERGY_KWH]] == [0, 1]
    for key, points in histories.items():  # a key written by both would have every epoch's step twice
        if key.startswith(schema.METRIC_PREFIX):
            steps = [step for step, _ in points]
            # ours: one point per step (the final totals replace the last epoch's at its step, not a second point)
            assert len(steps) == len(set(steps)), (key, points)
    assert run["tags"][schema.TAG_METERS]


LIVE_UNDER_AUTOLOG = """
import json, logging, os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.autolog(log_models=False, log_datasets=False, silent=True)  # MLflow's Keras autologging, as a user turns it on
import keras
from sklearn.datasets import load_digits
from mlflow_green.integrations.keras import GreenCallback
warnings = []
handler = logging.Handler()
handler.emit = lambda record: warnings.append(record.getMessage())
logging.getLogger("mlflow_green").addHandler(handler)
data = load_digits()
x, y = (data.data / 16.0).astype("float32"), data.target
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
cb = GreenCallback(live_metrics=True)  # asked for, beside MLflow's callback: each figure would be logged twice
history = model.fit(x[:600], y[:600], validation_data=(x[600:800], y[600:800]), epochs=3, batch_size=128, verbose=0,
                    callbacks=[cb])
client = mlflow.MlflowClient()
[run] = client.search_runs(["0"])
steps = {key: [m.step for m in client.get_metric_history(run.info.run_id, key)] for key in run.data.metrics}
json.dump({"run_id": run.info.run_id, "ours": cb.session.run_id, "steps": steps, "warnings": warnings,
           "history_keys": sorted(history.history)}, open("result.json", "w"))
"""


def test_live_metrics_asked_for_under_mlflow_keras_autologging_warn_and_log_once_per_step(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-c", LIVE_UNDER_AUTOLOG, uri], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["ours"] == result["run_id"], "one run: autologging's, which the callback logs into"
    assert any("live_metrics=True" in message for message in result["warnings"]), result["warnings"]
    assert {"loss", "val_loss", schema.ENERGY_KWH} <= set(result["steps"]), sorted(result["steps"])
    for key, steps in result["steps"].items():  # a live figure in the logs would be logged again by MLflow's callback
        if key.startswith(schema.METRIC_PREFIX):
            assert len(steps) == len(set(steps)), (key, steps)
    assert sorted(result["steps"][schema.ENERGY_KWH]) == [0, 1, 2]
    assert schema.ENERGY_KWH not in result["history_keys"], "no live figures in the logs MLflow's callback logs"
