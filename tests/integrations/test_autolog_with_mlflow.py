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
