"""A Keras PyDataset read by worker processes (``use_multiprocessing=True``): every worker stops when its pool
stops it, and every fit's run is the callback's alone (see ``pydataset_workers_case.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
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
    # its own process group: a hang is killed with every worker (left alive, they would wait for ever)
    process = subprocess.Popen([sys.executable, str(CASE), uri, str(FITS)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"the fits hung:\n{stderr[-3000:]}")
    finally:  # whatever is left of the group (workers that outlived the fits)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["workers_left"] == [], "worker processes that missed their pool's SIGTERM are still alive"
    for lost in ("cannot write the spool", "not sent yet", "KILLED"):  # a child ended the parent's run
        assert lost not in stderr, stderr[-3000:]
    client = MlflowClient(uri)
    assert len(set(result["runs"])) == FITS
    for run_id in result["runs"]:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run_id, schema.ENERGY_KWH)] == [0, 1, 2]
        assert run.data.metrics[schema.ENERGY_KWH] > 0
