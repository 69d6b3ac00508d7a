"""``mlflow-green sync``: only its tracking URI's spools, locked, each file isolated, clear errors, orphans ended."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from mlflow_green.cli import main
from mlflow_green.record import schema
from mlflow_green.record.recorder import RunRecorder
from mlflow_green.record.spool import MALFORMED_DIR, SpoolFile, spool_paths
from mlflow_green.record.timeouts import RunTimeouts

QUICK = RunTimeouts(start_s=0.0, end_s=0.3, retry_max_s=0.2)


def _sync(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["sync", *args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def _spool_for(uri: str, run_id: str, folder: Path, writes: int = 1) -> Path:
    """A spool file an earlier (finished) process left for ``run_id``, with ``writes`` metric entries."""
    spool = SpoolFile.create(folder, {"tracking_uri": uri, "run_id": run_id})
    for seq in range(1, writes + 1):
        spool.append({"seq": seq, "t_ms": 1_700_000_000_000 + seq, "op": "metrics",
                      "metrics": [[schema.ENERGY_KWH, float(seq), 1_700_000_000_000 + seq, seq]]})
    spool.release()
    return spool.path


def _left_by_a_dead_server(dead_uri: str, folder: Path) -> Path:
    recorder = RunRecorder(None, "d" * 32, tracking_uri=dead_uri, spool_dir=folder, timeouts=QUICK)
    recorder.log_tags({"a": "b"})
    recorder.close()
    recorder.stop()
    [path] = [p for p in spool_paths(folder) if p.name.startswith("d" * 32)]
    return path


def test_sync_sends_only_the_spools_of_its_tracking_uri_unless_all(
    tracking_uri: str, dead_uri: str, store: tuple[MlflowClient, str], spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, experiment_id = store
    run_id = client.create_run(experiment_id).info.run_id
    mine = _spool_for(tracking_uri, run_id, spool_dir, writes=2)
    other = _left_by_a_dead_server(dead_uri, spool_dir)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # the current one, as sync finds it
    code, output = _sync()
    assert code == 0, output
    assert f"run {run_id} on {tracking_uri}: 2 writes sent." in output
    assert f"Left alone: spool files of other tracking URIs: {dead_uri} (1)" in output
    assert not mine.exists() and other.exists()
    assert len(client.get_metric_history(run_id, schema.ENERGY_KWH)) == 2

    code, output = _sync("--all", "--retries", "1")
    assert code == 1
    assert "1 still pending" in output and "Connection refused" in output
    assert "Run `mlflow-green sync` again when the tracking server is reachable." in output
    assert other.exists()


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("foo://bar", "MLflow cannot use 'foo://bar'"),
        ("sqlite:////nowhere/at/all/mlflow.db", "there is no MLflow database at /nowhere/at/all/mlflow.db"),
        ("http://", "has no host name"),
    ],
)
def test_a_bad_tracking_uri_gets_a_clear_message_not_a_traceback(uri: str, says: str, spool_dir: Path) -> None:
    code, output = _sync("--tracking-uri", uri)
    assert code == 2
    assert "Invalid value for --tracking-uri" in output and says in output
    assert not Path("/nowhere/at/all").exists(), "no database is created by a mistyped URI"


def test_each_file_is_isolated_malformed_ones_are_moved_aside_with_a_reason(
    tracking_uri: str, store: tuple[MlflowClient, str], spool_dir: Path
) -> None:
    client, experiment_id = store
    run_id = client.create_run(experiment_id).info.run_id
    spool_dir.mkdir(parents=True)
    (spool_dir / "latin1.jsonl").write_bytes(b'{"spool": 2, "tracking_uri": "caf\xe9"}\n')
    (spool_dir / "x.jsonl").mkdir()
    (spool_dir / "empty.jsonl").write_bytes(b"")
    (spool_dir / "no-run.jsonl").write_text(json.dumps({"spool": 2, "tracking_uri": tracking_uri}) + "\n")
    (spool_dir / "list.jsonl").write_text("[1, 2, 3]\n")
    good = _spool_for(tracking_uri, run_id, spool_dir)

    code, output = _sync("--tracking-uri", tracking_uri)
    assert code == 1, output
    assert f"run {run_id} on {tracking_uri}: 1 write sent." in output
    assert "5 malformed files moved aside" in output
    aside = spool_dir / MALFORMED_DIR
    assert sorted(p.name for p in aside.iterdir() if not p.name.endswith(".reason")) == [
        "empty.jsonl", "latin1.jsonl", "list.jsonl", "no-run.jsonl", "x.jsonl"]
    assert "not a regular file" in (aside / "x.jsonl.reason").read_text()
    assert "names neither a run nor a run to create" in (aside / "no-run.jsonl.reason").read_text()
    assert not good.exists()
    assert _sync("--tracking-uri", tracking_uri) == (0, f"Nothing to sync in {spool_dir} for {tracking_uri}.\n")


def test_a_file_another_sync_holds_is_skipped_then_sent_once_it_is_free(
    tracking_uri: str, store: tuple[MlflowClient, str], spool_dir: Path
) -> None:
    client, experiment_id = store
    runs = [client.create_run(experiment_id).info.run_id for _ in range(2)]
    held, free = (_spool_for(tracking_uri, run_id, spool_dir, writes=3) for run_id in runs)
    other_sync = SpoolFile.acquire(held)
    code, output = _sync("--tracking-uri", tracking_uri)
    assert code == 1
    assert f"{held.name}: skipped, a live process is writing it (or another sync has it)." in output
    assert "3 writes sent" in output and not free.exists()
    assert client.get_metric_history(runs[0], schema.ENERGY_KWH) == []
    other_sync.release()
    code, output = _sync("--tracking-uri", tracking_uri)
    assert code == 0 and f"run {runs[0]} on {tracking_uri}: 3 writes sent." in output


def test_a_training_killed_with_sigkill_is_ended_killed_at_its_last_spooled_point(
    tracking_uri: str, store: tuple[MlflowClient, str], spool_dir: Path
) -> None:
    client, experiment_id = store
    code = f"""
import time, mlflow, mlflow_green
from mlflow_green.testing import FakeMeter
mlflow.set_tracking_uri({tracking_uri!r})
mlflow.set_experiment(experiment_id={experiment_id!r})
with mlflow_green.track(run_name="killed", meters=[FakeMeter({{"cpu:0": 10.0}})]) as t:
    t.log_step(0)
    t.log_step(1)
    print(t.run_id, flush=True)
    time.sleep(600)
"""
    env = {**os.environ, "MLFLOW_GREEN_SPOOL_DIR": str(spool_dir)}
    training = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        run_id = training.stdout.readline().strip()
        deadline = time.monotonic() + 60
        while len(client.get_metric_history(run_id, schema.ENERGY_KWH)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        training.send_signal(signal.SIGKILL)
        training.wait()
    assert client.get_run(run_id).info.status == "RUNNING"
    [path] = spool_paths(spool_dir)
    last_t_ms = max(json.loads(line)["t_ms"] for line in path.read_text().splitlines()[1:])

    code_, output = _sync("--tracking-uri", tracking_uri)
    assert code_ == 0, output
    assert f"ended KILLED (its writer, pid {training.pid} on host" in output
    info = client.get_run(run_id).info
    assert (info.status, info.end_time) == ("KILLED", last_t_ms)
    assert not spool_paths(spool_dir)


def test_dry_run_lists_what_is_pending_and_sends_nothing(dead_uri: str, spool_dir: Path) -> None:
    path = _left_by_a_dead_server(dead_uri, spool_dir)
    code, output = _sync("--tracking-uri", dead_uri, "--dry-run")
    assert code == 0
    assert f"run {'d' * 32}: 1 pending write for {dead_uri}" in output and "writer pid" in output
    assert path.exists()
