"""SIGTERM during a fit (a scheduler pre-empting the job): the callback's run ends KILLED at that moment."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlflow_green.record import schema

SCRIPT = Path(__file__).with_name("sigterm_train.py")


def _terminated_once_started(case: str, tmp_path: Path, *, after_s: float) -> tuple[subprocess.Popen, str, float]:
    """Run ``sigterm_train.py CASE``; once it wrote ``started`` (and ``after_s`` later), SIGTERM it.

    Returns the finished child, its output and when the signal was sent.
    """
    child = subprocess.Popen([sys.executable, str(SCRIPT), case, str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "started").exists():
            assert child.poll() is None, child.stdout.read()[-3000:]
            assert time.monotonic() < deadline, f"{case}: the training never got going"
            time.sleep(0.2)
        time.sleep(after_s)
        killed_at = time.time()
        child.send_signal(signal.SIGTERM)
        output = child.communicate(timeout=120)[0]
    finally:
        if child.poll() is None:
            child.kill()
    return child, output, killed_at


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["keras", "lightning", "transformers", "track"])
def test_sigterm_ends_the_run_killed_with_the_energy_until_then(framework: str, tmp_path: Path) -> None:
    if framework != "track":
        pytest.importorskip(framework)
    child, output, killed_at = _terminated_once_started(framework, tmp_path, after_s=0.5)
    if framework != "lightning":  # the process still dies of the signal, as it would without the callback
        assert child.returncode == -signal.SIGTERM, output[-3000:]
    # (Lightning turns SIGTERM into its SIGTERMException at the end of the batch, then exits)
    started = json.loads((tmp_path / "started").read_text())
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(started["run_id"])
    assert run.info.status == "KILLED", output[-3000:]
    # ended when the signal came (Lightning: at the end of the batch in progress), not later
    assert run.info.end_time / 1000 <= killed_at + 5.0
    assert run.data.metrics[schema.ENERGY_KWH] > 0
    assert run.data.metrics[schema.DURATION_S] >= 1.0
    report = json.loads(Path(client.download_artifacts(run.info.run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert report["status"] == "KILLED"
    # the meters stopped at the signal (Lightning: at the end of the batch), not while the run was being ended
    assert run.data.metrics[schema.DURATION_S] <= killed_at - run.info.start_time / 1000 + 1.0


@pytest.mark.slow
def test_sigterm_during_a_trainer_evaluate_alone_ends_its_run_killed(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    child, output, _ = _terminated_once_started("transformers-evaluate", tmp_path, after_s=0.0)
    assert child.returncode == -signal.SIGTERM, output[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("sigterm").experiment_id])  # made when it ended
    assert run.info.status == "KILLED", output[-3000:]
    assert run.data.metrics[schema.phase_energy_key("validate")] > 0


@pytest.mark.slow
def test_sigterm_inside_a_meter_read_ends_the_run_killed_instead_of_hanging(tmp_path: Path) -> None:
    """The read holds the meters' lock; ending the measurement takes it again: handled there, the process
    hung. The watch has the signal delivered again once the read is over."""
    pytest.importorskip("keras")
    child = subprocess.Popen([sys.executable, str(SCRIPT), "keras-in-read", str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = child.communicate(timeout=180)[0]
    except subprocess.TimeoutExpired:
        child.kill()
        pytest.fail("the training hung on a SIGTERM that came in the middle of a meter read")
    assert child.returncode == -signal.SIGTERM, output[-3000:]
    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(json.loads((tmp_path / "started").read_text())["run_id"])
    assert run.info.status == "KILLED", output[-3000:]
    assert run.data.tags[schema.TAG_METERS] == "cpu:fake,ram:fake"  # the signal was not taken for a meter failure
    assert run.data.metrics[schema.ENERGY_KWH] > 0
