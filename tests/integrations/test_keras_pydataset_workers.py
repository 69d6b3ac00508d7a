"""A Keras PyDataset read by worker processes (``use_multiprocessing=True``): every worker stops when its pool
stops it, and every fit's run is the callback's alone (see ``pydataset_workers_case.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

pytest.importorskip("keras")

from mlflow_green.record import schema  # noqa: E402

CASE = Path(__file__).with_name("pydataset_workers_case.py")
FITS = 12  # before the fix, 1 to 5 workers of 12 such fits were left alive, and 1 fit in 12 lost its spool file


@pytest.mark.slow
def test_pydataset_workers_all_stop_and_each_fit_logs_its_own_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, str(CASE), uri, str(FITS)], capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["workers_left"] == [], "worker processes that missed their pool's SIGTERM are still alive"
    assert "mlflow-green:" not in done.stderr, done.stderr[-3000:]  # no spool file lost, no write left unsent
    client = MlflowClient(uri)
    assert len(set(result["runs"])) == FITS
    for run_id in result["runs"]:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run_id, schema.ENERGY_KWH)] == [0, 1, 2]
        assert run.data.metrics[schema.ENERGY_KWH] > 0
