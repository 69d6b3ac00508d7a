"""Nothing is lost when MLflow is unreachable: writes are spooled, replayed in order, exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from mlflow_green.cli import main
from mlflow_green.record import schema
from mlflow_green.record.recorder import RunRecorder, replay
from mlflow_green.record.spool import RunSpool, spools
from mlflow_green.testing.server import free_port


@pytest.fixture()
def unreachable_uri(monkeypatch: pytest.MonkeyPatch) -> str:
    """A tracking server address nothing listens on; MLflow's client fails at once there."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    return f"http://127.0.0.1:{free_port()}"


def _run_in(tracking_uri: str, tmp_path: Path) -> str:
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(f"spool-{time.time_ns()}", artifact_location=(tmp_path / "a").as_uri())
    return client.create_run(experiment_id).info.run_id


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_writes_to_an_unreachable_server_are_spooled_then_replayed_exactly_once(
    tracking_uri: str, unreachable_uri: str, tmp_path: Path
) -> None:
    run_id = _run_in(tracking_uri, tmp_path)
    recorder = RunRecorder(MlflowClient(unreachable_uri), run_id, spool_dir=tmp_path / "spool")
    start_s = time.monotonic()
    for step in range(3):
        recorder.log_metrics({schema.ENERGY_KWH: 0.1 * (step + 1)}, step=step)
    recorder.log_tags({schema.TAG_METERS: "cpu:estimate"})
    recorder.log_report({"schema_version": 1})
    assert time.monotonic() - start_s < 0.5, "writing never waits for the server"
    assert recorder.close(timeout_s=1.0) is False
    [spool] = list(spools(tmp_path / "spool"))
    assert [op["op"] for op in spool.pending()] == ["metrics", "metrics", "metrics", "tags", "report"]
    assert spool.tracking_uri == unreachable_uri

    healthy = MlflowClient(tracking_uri)
    assert replay(spool, healthy) == (5, 0)
    assert _steps(healthy, run_id, schema.ENERGY_KWH) == [0, 1, 2]
    run = healthy.get_run(run_id)
    assert run.data.metrics[schema.ENERGY_KWH] == pytest.approx(0.3)
    assert run.data.tags[schema.TAG_METERS] == "cpu:estimate"
    assert not list(spools(tmp_path / "spool")), "a fully sent spool is deleted"


def test_a_replay_interrupted_before_it_was_recorded_does_not_duplicate_points(tracking_uri: str, tmp_path: Path) -> None:
    run_id = _run_in(tracking_uri, tmp_path)
    spool = RunSpool.create(tmp_path / "spool", tracking_uri, run_id)
    for step in range(3):
        spool.append({"op": "metrics", "metrics": [[schema.ENERGY_KWH, float(step), 1_700_000_000_000 + step, step]]})
    client = MlflowClient(tracking_uri)
    replay(RunSpool(spool.path), client)
    # A crash between sending and recording: the same writes are sent again.
    spool2 = RunSpool.create(tmp_path / "spool", tracking_uri, run_id)
    for step in range(3):
        spool2.append({"op": "metrics", "metrics": [[schema.ENERGY_KWH, float(step), 1_700_000_000_000 + step, step]]})
    replay(spool2, client)
    assert _steps(client, run_id, schema.ENERGY_KWH) == [0, 1, 2]


class FlakyClient:
    """A real MlflowClient behind a network that drops the first ``outage`` calls."""

    def __init__(self, client: MlflowClient, outage: int) -> None:
        self._client, self.outage, self.calls = client, outage, 0

    def __getattr__(self, name: str):  # noqa: ANN204
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            self.calls += 1
            if self.calls <= self.outage:
                raise ConnectionError("connection refused")
            return attribute(*args, **kwargs)

        return call


def test_the_writer_retries_with_backoff_and_keeps_the_order(
    tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow_green.record.recorder as recorder_module

    monkeypatch.setattr(recorder_module, "BACKOFF_START_S", 0.05)
    run_id = _run_in(tracking_uri, tmp_path)
    flaky = FlakyClient(MlflowClient(tracking_uri), outage=3)
    recorder = RunRecorder(flaky, run_id, spool_dir=tmp_path / "spool")
    for step in range(4):
        recorder.log_metrics({schema.EPOCH_ENERGY_KWH: float(step)}, step=step)
    assert recorder.close(timeout_s=10) is True
    history = MlflowClient(tracking_uri).get_metric_history(run_id, schema.EPOCH_ENERGY_KWH)
    assert [m.step for m in sorted(history, key=lambda m: m.timestamp)] == [0, 1, 2, 3]
    assert len(recorder.failures) == 3
    assert not list(spools(tmp_path / "spool"))


def test_mlflow_green_sync_replays_what_a_crashed_process_left(tracking_uri: str, unreachable_uri: str, tmp_path: Path) -> None:
    run_id = _run_in(tracking_uri, tmp_path)
    spool_dir = tmp_path / "spool"
    code = f"""
import os
from mlflow import MlflowClient
from mlflow_green.record.recorder import RunRecorder
recorder = RunRecorder(MlflowClient({unreachable_uri!r}), {run_id!r}, spool_dir={str(spool_dir)!r})
for step in range(3):
    recorder.log_metrics({{"green/energy_kwh": float(step)}}, step=step)
os._exit(1)   # crash: no close(), nothing sent
"""
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, **env}, check=False)
    dry = CliRunner().invoke(main, ["sync", "--spool-dir", str(spool_dir), "--dry-run"])
    assert f"run {run_id}: 3 pending write(s)" in dry.output
    result = CliRunner().invoke(main, ["sync", "--spool-dir", str(spool_dir), "--tracking-uri", tracking_uri])
    assert result.exit_code == 0, result.output
    assert _steps(MlflowClient(tracking_uri), run_id, schema.ENERGY_KWH) == [0, 1, 2]
    again = CliRunner().invoke(main, ["sync", "--spool-dir", str(spool_dir)])
    assert again.exit_code == 0 and "Nothing to sync" in again.output


def test_sync_exits_1_while_the_server_is_still_unreachable(unreachable_uri: str, tmp_path: Path) -> None:
    spool = RunSpool.create(tmp_path / "spool", unreachable_uri, "0123456789abcdef")
    spool.append({"op": "tags", "tags": {"green.version": "0"}})
    result = CliRunner().invoke(main, ["sync", "--spool-dir", str(tmp_path / "spool")])
    assert result.exit_code == 1
    assert "still pending" in result.output
    assert json.loads(spool.path.read_text().splitlines()[0])["tracking_uri"] == unreachable_uri


def test_track_goes_on_while_mlflow_is_down_and_spools_everything(
    mlflow_experiment: str, unreachable_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow_green
    from mlflow_green.testing import FakeMeter

    monkeypatch.setenv("MLFLOW_GREEN_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("MLFLOW_GREEN_FLUSH_TIMEOUT_S", "1")
    healthy_uri = mlflow.get_tracking_uri()
    run = mlflow.start_run()
    mlflow.set_tracking_uri(unreachable_uri)  # the server goes away after the run was created
    try:
        with mlflow_green.track(meters=[FakeMeter({"cpu:0": 10.0, "ram:0": 1.0})]) as t:
            t.log_step(0)
    finally:
        mlflow.set_tracking_uri(healthy_uri)
        mlflow.end_run()
    assert t.measurement is not None and t.measurement.energy_j > 0
    [spool] = list(spools(tmp_path / "spool"))
    assert spool.run_id == run.info.run_id and len(spool.pending()) >= 3
