"""A process forked inside a measured block (``os.fork``: a server's or a pool's child) that leaves through the block
— ``sys.exit`` or an exception — is not the measurement: it wrote its own end into the parent's run (``FAILED``
while the parent's block still ran, a second point at its step), removed the parent's spool file and waited on a
writer thread fork did not copy. Real processes, a real sqlite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlflow_green.record import schema

SCRIPT = Path(__file__).with_name("forking_block.py")


@pytest.mark.parametrize("how", ["exit", "raise"])
def test_a_forked_child_leaving_the_block_does_not_end_or_log_into_the_parents_run(tmp_path: Path, how: str) -> None:
    env = {**os.environ, "MLFLOW_GREEN_SPOOL_DIR": str(tmp_path / "spool")}
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), how], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["child_exit"] == (0 if how == "exit" else 1)  # the child ended as it would without mlflow-green
    assert result["child_s"] < 5.0  # it waited for no writer (the end timeout is 30 s)
    assert result["seen"] == "RUNNING"  # the parent's block was still running
    assert len(result["spooled"]) == 1  # the parent's spool file, still there
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    for key in (schema.ENERGY_KWH, schema.DURATION_S):  # the parent's points only: the child's end gave a second at 0
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert steps[0] == 0 and len(steps) == len(set(steps)), (key, steps)  # its end at 1 if the block ran on long
    duration_s = run.data.metrics[schema.DURATION_S]
    assert duration_s > 0.9  # the whole block: before the fork, the child's life and after it
    assert run.data.metrics[schema.ENERGY_KWH] == pytest.approx(50.0 * duration_s / 3.6e6, rel=0.02)
