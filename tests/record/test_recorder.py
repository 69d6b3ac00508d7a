"""The background writer: never waits long, never raises, keeps what it cannot send, and says exactly what."""

from __future__ import annotations

import json
import logging
import re
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlflow_green.record import schema
from mlflow_green.record.recorder import RunRecorder
from mlflow_green.record.spool import REJECTED_DIR, spool_paths
from mlflow_green.record.timeouts import RunTimeouts
from mlflow_green.testing.server import free_port

QUICK = RunTimeouts(start_s=0.0, end_s=0.5, retry_max_s=0.2)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("mlflow_green")]


def test_writes_never_wait_and_close_waits_at_most_the_end_timeout_whatever_mlflows_retries(
    spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MLflow's own HTTP retries (7 tries, backoff up to minutes) are left at their defaults here."""
    uri = f"http://127.0.0.1:{free_port()}"
    recorder = RunRecorder(None, "0123456789abcdef0123456789abcdef", tracking_uri=uri, timeouts=QUICK)
    try:
        started = time.monotonic()
        for step in range(3):
            recorder.log_metrics({schema.ENERGY_KWH: float(step)}, step=step)
        assert time.monotonic() - started < 0.1, "writing never waits for the server"
        started = time.monotonic()
        assert recorder.close() is False
        assert time.monotonic() - started < QUICK.end_s + 0.3
    finally:
        recorder.stop()
    [path] = spool_paths(spool_dir)
    [message] = [m for m in _warnings(caplog) if "not sent yet" in m]
    assert f"run 0123456789abcdef0123456789abcdef on {uri}: 0 of 3 writes sent; 3 writes not sent yet" in message
    assert f"kept in {path}" in message
    assert f"`mlflow-green sync --tracking-uri {uri}`" in message


@pytest.fixture()
def on_store(store: tuple[MlflowClient, str]) -> tuple[MlflowClient, str, RunRecorder]:
    """A new run in the test's store, and a recorder writing into it."""
    client, experiment_id = store
    run_id = client.create_run(experiment_id).info.run_id
    return client, run_id, RunRecorder(client, run_id, timeouts=QUICK)


def test_a_write_the_server_refuses_is_set_aside_and_the_next_ones_still_arrive(
    on_store: tuple[MlflowClient, str, RunRecorder], spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client, run_id, recorder = on_store
    recorder.log_metrics({"energy$kwh": 1.0}, step=0)
    recorder.log_metrics({schema.ENERGY_KWH: 2.0}, step=0)
    recorder.log_tags({schema.TAG_METERS: "cpu:estimate"})
    assert recorder.close(timeout_s=10) is True
    data = client.get_run(run_id).data
    assert data.metrics == {schema.ENERGY_KWH: 2.0} and data.tags[schema.TAG_METERS] == "cpu:estimate"
    [rejected] = list((spool_dir / REJECTED_DIR).iterdir())
    assert "energy$kwh" in rejected.read_text()
    [message] = [m for m in _warnings(caplog) if "refused by the server" in m and "of 3 writes" in m]
    assert "2 of 3 writes sent; 1 write refused by the server (INVALID_PARAMETER_VALUE" in message
    assert f"kept in {rejected}" in message
    assert not spool_paths(spool_dir)


def test_values_that_are_not_finite_numbers_are_left_out_with_a_warning_and_the_others_arrive(
    on_store: tuple[MlflowClient, str, RunRecorder], caplog: pytest.LogCaptureFixture
) -> None:
    client, run_id, recorder = on_store
    recorder.log_metrics({schema.ENERGY_KWH: 2.0, schema.POWER_W: float("nan"), schema.DURATION_S: 3}, step=0)
    recorder.log_metrics({schema.ENERGY_KWH: 2.5, schema.EMISSIONS_KG: float("inf"), schema.QUALITY: None}, step=1)  # type: ignore[dict-item]
    assert recorder.close(timeout_s=10) is True
    assert client.get_run(run_id).data.metrics == {schema.ENERGY_KWH: 2.5, schema.DURATION_S: 3.0}
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, schema.ENERGY_KWH)] == [(0, 2.0), (1, 2.5)]
    dropped = sorted(m for m in _warnings(caplog) if "not a finite number" in m)
    assert dropped == [f"mlflow-green: not logging {schema.EMISSIONS_KG}=inf (not a finite number)",
                       f"mlflow-green: not logging {schema.POWER_W}=nan (not a finite number)",
                       f"mlflow-green: not logging {schema.QUALITY}=None (not a finite number)"]


def test_an_unwritable_spool_folder_falls_back_is_reported_once_and_never_raises(
    store: tuple[MlflowClient, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client, experiment_id = store
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the spool folder should be")
    fallback = tmp_path / "fallback"
    monkeypatch.setenv("MLFLOW_GREEN_SPOOL_FALLBACK_DIR", str(fallback))
    run_id = client.create_run(experiment_id).info.run_id
    recorder = RunRecorder(client, run_id, spool_dir=blocked, timeouts=QUICK)
    for step in range(3):
        recorder.log_metrics({schema.ENERGY_KWH: float(step)}, step=step)
    assert recorder.close(timeout_s=10) is True
    assert len(client.get_metric_history(run_id, schema.ENERGY_KWH)) == 3
    problems = [m for m in _warnings(caplog) if "cannot write the spool" in m]
    assert len(problems) == 1, problems
    assert str(blocked) in problems[0] and str(fallback) in problems[0]
    assert not spool_paths(fallback), "sent, so deleted"


def test_with_no_writable_spool_the_message_counts_exactly_what_would_be_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, dead_uri: str
) -> None:
    for name in ("spool", "fallback"):
        (tmp_path / name).write_text("not a folder")
    monkeypatch.setenv("MLFLOW_GREEN_SPOOL_FALLBACK_DIR", str(tmp_path / "fallback"))
    recorder = RunRecorder(None, "f" * 32, tracking_uri=dead_uri, spool_dir=tmp_path / "spool", timeouts=QUICK)
    try:
        for step in range(4):
            recorder.log_metrics({schema.ENERGY_KWH: float(step)}, step=step)
        assert recorder.close() is False
    finally:
        recorder.stop()
    [problem] = [m for m in _warnings(caplog) if "cannot write the spool" in m]
    assert "kept in memory only" in problem and "are lost" in problem
    [message] = [m for m in _warnings(caplog) if "not sent yet" in m]
    assert "4 writes not sent yet" in message
    assert "4 writes could not be spooled" in message and "lost if this process ends" in message
    assert "mlflow-green sync" not in message, "nothing was spooled: no sync can recover it"


def test_a_spool_folder_removed_during_training_is_made_again_with_every_write_not_sent(
    spool_dir: Path, dead_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = RunRecorder(None, "e" * 32, tracking_uri=dead_uri, timeouts=QUICK)
    try:
        recorder.log_metrics({schema.ENERGY_KWH: 1.0}, step=0)
        recorder.log_tags({schema.TAG_METERS: "cpu:estimate"})
        shutil.rmtree(spool_dir)
        recorder.log_metrics({schema.ENERGY_KWH: 2.0}, step=1)
        [path] = spool_paths(spool_dir)
        ops = [json.loads(line)["op"] for line in path.read_text().splitlines()[1:]]
        assert ops == ["metrics", "tags", "metrics"]
    finally:
        recorder.close()
        recorder.stop()
    assert sum("made a new spool file" in m and "nothing was lost" in m for m in _warnings(caplog)) == 1


def test_a_later_training_sends_what_a_killed_one_left_for_the_same_server(
    tracking_uri: str, store: tuple[MlflowClient, str], spool_dir: Path
) -> None:
    from mlflow_green.record.spool import SpoolFile

    client, experiment_id = store
    killed_run = client.create_run(experiment_id).info.run_id
    dead = {"host": __import__("socket").gethostname(), "boot_id": "", "pid": 2**22 + 19, "started_s": 1.0}
    orphan = SpoolFile.create(spool_dir, {"tracking_uri": tracking_uri, "run_id": killed_run, "owned": True, "writer": dead})
    orphan.append({"seq": 1, "t_ms": 1_700_000_000_500, "op": "metrics", "metrics": [[schema.ENERGY_KWH, 0.5, 1_700_000_000_500, 0]]})
    orphan.release()

    later = RunRecorder(client, client.create_run(experiment_id).info.run_id, timeouts=QUICK)
    later.log_tags({"a": "b"})
    assert later.close(timeout_s=10)
    deadline = time.monotonic() + 20
    while orphan.path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not orphan.path.exists()
    info = client.get_run(killed_run).info
    assert (info.status, info.end_time) == ("KILLED", 1_700_000_000_500)
    assert client.get_run(killed_run).data.metrics[schema.ENERGY_KWH] == 0.5


def test_a_run_the_server_refuses_to_create_sets_its_writes_aside_with_the_reason(
    store: tuple[MlflowClient, str], spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow_green.record.ops import RunSpec

    client, _ = store
    spec = RunSpec(token="0" * 32, experiment_id="987654321", run_name="nowhere")  # no such experiment
    recorder = RunRecorder(client, spec=spec, owned=True, timeouts=QUICK)
    assert recorder.wait_created(10) is None and "987654321" in (recorder.creation_error or "")
    recorder.log_metrics({schema.ENERGY_KWH: 1.0}, step=0)
    recorder.terminate("FINISHED")
    assert recorder.close(timeout_s=10) is True, "nothing waits: everything was set aside"
    [rejected] = list((spool_dir / REJECTED_DIR).iterdir())
    reasons = [json.loads(line)["reason"] for line in rejected.read_text().splitlines()]
    assert len(reasons) == 3 and all("987654321" in r for r in reasons)
    assert reasons[1].startswith("the run could not be created: ")
    [message] = [m for m in _warnings(caplog) if "refused to create the run" in m]
    assert "2 writes refused by the server" in message and str(rejected) in message


@pytest.fixture()
def private_store(tmp_path: Path) -> tuple[MlflowClient, str]:
    """A sqlite store of the test's own, its tables made before the test runs (MLflow 2 configures logging from
    alembic's file as it makes them, which drops the handlers ``caplog`` installed for a test already running), and a
    run in it: (client, run id)."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'held.db'}")
    return client, client.create_run(client.create_experiment("held", artifact_location=(tmp_path / "a").as_uri())).info.run_id


def test_a_local_store_held_by_another_writer_past_the_end_timeout_is_said_to_be_waited_on_then_gets_everything(
    private_store: tuple[MlflowClient, str], tmp_path: Path, spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another connection (another process's long write) holds a sqlite store (for less than the 20 s MLflow's sessions
    wait for it): the end of the fit gives up after the end timeout and says that a request has no answer yet, and for
    how long (not just 'no answer'); once the other writer is done, this process sends everything and the spool file
    is gone."""
    client, run_id = private_store
    recorder = RunRecorder(client, run_id, timeouts=QUICK)
    holder = sqlite3.connect(tmp_path / "held.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for step in range(3):
            recorder.log_metrics({schema.ENERGY_KWH: float(step)}, step=step)
        recorder.terminate("FINISHED")
        deadline = time.monotonic() + 10
        while recorder.sending_since_s is None and time.monotonic() < deadline:  # the request waits for the store
            time.sleep(0.01)
        assert recorder.close() is False
    finally:
        holder.execute("COMMIT")
        holder.close()
    [message] = [m for m in _warnings(caplog) if "not sent yet" in m]
    waited = re.search(r"4 writes not sent yet \(no answer yet to a request sent ([\d.]+) s ago \(MLflow's client may be", message)
    assert waited is not None and QUICK.end_s <= float(waited.group(1)) < 15, message
    deadline = time.monotonic() + 60
    while spool_paths(spool_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not spool_paths(spool_dir), "sent once the store was free, then the spool file deleted"
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and [m.value for m in client.get_metric_history(run_id, schema.ENERGY_KWH)] == [0, 1, 2]


def test_writes_left_by_a_stopped_writer_are_said_to_wait_for_no_request(
    spool_dir: Path, dead_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer stopped (as at a process's end) before its writes went: closing it says its thread is not running,
    not that the server has not answered, and where the writes are kept."""
    recorder = RunRecorder(None, "d" * 32, tracking_uri=dead_uri, timeouts=QUICK)
    recorder.log_metrics({schema.ENERGY_KWH: 1.0}, step=0)
    recorder.stop()
    assert recorder.close() is False
    [message] = [m for m in _warnings(caplog) if "not sent yet" in m]
    [path] = spool_paths(spool_dir)
    assert "1 write not sent yet (" in message and "the writer was stopped)" in message, message
    assert f"kept in {path}: to send them later run `mlflow-green sync --tracking-uri {dead_uri}`" in message, message
