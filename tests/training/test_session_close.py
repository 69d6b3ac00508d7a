"""An evaluation while the fit's end still waits for the tracking server: it logs into the fit's run.

A fit that failed in Keras's own code is ended by a watching thread, whose end waits (up to the end
timeout) for a slow or unreachable server; the user's ``predict`` right after it ran meanwhile and,
seeing no run bound, started a second run holding a copy of the failed fit's report. Here a real
process trains against an address where no server answers (everything is spooled) and exits; the
spool is then replayed into a real store as ``mlflow-green sync`` does, and the store must hold one
run with the fit's and the evaluation's figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from mlflow import MlflowClient

from mlflow_green.record import schema
from mlflow_green.record.replay import replay_file
from mlflow_green.record.spool import spool_paths
from mlflow_green.testing.server import free_port

SCRIPT = textwrap.dedent("""
    import sys, threading, time
    import mlflow
    from mlflow_green import EnergyTracker
    from mlflow_green.testing import FakeMeter
    from mlflow_green.training.session import TrainingSession

    mlflow.set_tracking_uri(sys.argv[1])  # nothing answers there
    session = TrainingSession(framework="test", tracker=EnergyTracker(meters=[FakeMeter({"cpu:0": 10.0, "ram:0": 1.0})]))
    session.bind_run()
    session.begin_fit(planned_epochs=3)
    session.begin_epoch(0)
    token = session.output.pending_creation()["token"]
    ending = threading.Thread(target=session.end_fit, args=("FAILED",))  # as the fit's watch ends it
    ending.start()
    time.sleep(0.5)
    assert ending.is_alive(), "the fit's end is still waiting for the server"
    session.begin_eval("predict")
    session.end_eval("predict", samples=64)
    ending.join(30)
    print("token", token, session.output.pending_creation()["token"], flush=True)
""")


def test_an_evaluation_while_the_fits_end_waits_for_the_server_logs_into_the_fits_run(tracking_uri: str, tmp_path: Path) -> None:
    store = MlflowClient(tracking_uri)
    experiment_id = store.create_experiment(f"close-{time.time_ns()}", artifact_location=(tmp_path / "a").as_uri())
    env = {**os.environ, "MLFLOW_GREEN_SPOOL_DIR": str(tmp_path / "spool"),
           "MLFLOW_GREEN_SPOOL_FALLBACK_DIR": str(tmp_path / "spool-fallback"), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "2", "MLFLOW_GREEN_START_TIMEOUT_S": "0",
           "MLFLOW_GREEN_END_TIMEOUT_S": "2",  # the fit's end waits this long for the dead server
           "MLFLOW_GREEN_RETRY_MAX_S": "0.2", "MLFLOW_EXPERIMENT_ID": experiment_id}
    env.pop("MLFLOW_EXPERIMENT_NAME", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT, f"http://127.0.0.1:{free_port()}"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("token ")]
    _, token, after = line.split()
    assert after == token, "the evaluation went into the fit's run"
    for path in spool_paths(tmp_path / "spool"):  # the server is back: `mlflow-green sync`
        assert replay_file(path, client_for=lambda uri: store).outcome == "done"
    [run] = store.search_runs([experiment_id])
    assert run.data.tags[schema.TAG_RUN_TOKEN] == token and run.info.status == "FAILED"
    assert run.data.metrics[schema.ENERGY_KWH] > 0 and run.data.metrics[schema.ENERGY_PREDICT_KWH] > 0
