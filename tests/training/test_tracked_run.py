"""track() against a real MLflow sqlite store: metrics, tags, report.json and run status."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

import mlflow_green
from mlflow_green.record import schema
from mlflow_green.testing import FakeMeter


def _meter() -> FakeMeter:
    return FakeMeter({"cpu:0": 40.0, "ram:0": 5.0}, name="fake")


def _report(client: MlflowClient, run_id: str, tmp_path: Path) -> dict:
    path = client.download_artifacts(run_id, schema.REPORT_ARTIFACT, str(tmp_path))
    return json.loads(Path(path).read_text())


def test_track_starts_and_ends_its_own_run_with_metrics_tags_and_report(
    mlflow_experiment: str, tmp_path: Path
) -> None:
    with mlflow_green.track(meters=[_meter()], region="FR", pue=1.2) as t:
        for epoch in range(3):
            t.log_step(epoch, samples=100)
    client = MlflowClient()
    run = client.get_run(t.run_id)
    assert run.info.status == "FINISHED"
    assert mlflow.active_run() is None
    metrics = run.data.metrics
    total_kwh = t.measurement.energy_j / 3.6e6
    assert metrics[schema.ENERGY_KWH] == pytest.approx(total_kwh)
    assert metrics[schema.ENERGY_CPU_KWH] + metrics[schema.ENERGY_RAM_KWH] == pytest.approx(total_kwh)
    intensity = metrics[schema.CARBON_INTENSITY_G_PER_KWH]
    assert metrics[schema.EMISSIONS_KG] == pytest.approx(total_kwh * 1.2 * intensity / 1000)
    assert metrics[schema.ENERGY_PER_SAMPLE_J] == pytest.approx(t.measurement.energy_j / 300)
    history = client.get_metric_history(t.run_id, schema.ENERGY_KWH)
    values = [m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))]
    assert values == sorted(values), "energy is a running total"
    assert values[-1] == pytest.approx(total_kwh)  # the last step holds the block's final totals
    for key in (schema.ENERGY_KWH, schema.EPOCH_ENERGY_KWH, schema.ENERGY_CPU_KWH, schema.DURATION_S):
        steps = sorted(m.step for m in client.get_metric_history(t.run_id, key))
        assert steps == [0, 1, 2], f"{key}: one point per step, the final totals sent with the last step's: {steps}"
    assert not any(key.startswith("system/") for key in metrics)

    tags = run.data.tags
    assert tags[schema.TAG_METERS] == "cpu:fake,ram:fake"
    assert tags[schema.TAG_ESTIMATED] == "false"
    assert tags[schema.TAG_REGION] == "FRA"
    assert tags[schema.TAG_PUE] == "1.2"
    assert "codecarbon" in tags[schema.TAG_INTENSITY_SOURCE]
    assert tags[schema.TAG_VERSION] == mlflow_green.__version__
    assert tags[schema.TAG_HARDWARE_GPU] == "none"

    report = _report(client, t.run_id, tmp_path)
    assert report["schema_version"] == schema.SCHEMA_VERSION
    assert report["totals"]["energy_kwh"] == pytest.approx(total_kwh)
    assert report["config"]["region"] == "FRA"
    devices = next(iter(report["hosts"].values()))["devices"]
    assert {d["device_id"]: d["provenance"] for d in devices} == {"cpu:0": "counter", "ram:0": "counter"}
    assert report["samples"] == 300


def test_track_logs_into_the_active_run_and_leaves_it_open(mlflow_experiment: str) -> None:
    with mlflow.start_run() as run:
        with mlflow_green.track(meters=[_meter()]) as t:
            pass
        assert t.run_id == run.info.run_id
        assert mlflow.active_run() is not None
    data = MlflowClient().get_run(run.info.run_id).data
    assert schema.ENERGY_KWH in data.metrics
    assert data.tags[schema.TAG_REGION] == "WORLD"


def test_an_exception_leaves_the_run_failed_with_the_energy_so_far(mlflow_experiment: str) -> None:
    with pytest.raises(ZeroDivisionError):
        with mlflow_green.track(meters=[_meter()]) as t:
            1 / 0  # noqa: B018
    run = MlflowClient().get_run(t.run_id)
    assert run.info.status == "FAILED"
    assert run.data.metrics[schema.ENERGY_KWH] > 0


def test_track_as_a_decorator_measures_each_call_in_its_own_run(mlflow_experiment: str) -> None:
    @mlflow_green.track(meters="estimate")
    def train() -> str:
        return mlflow.active_run().info.run_id

    first, second = train(), train()
    assert first != second
    for run_id in (first, second):
        run = MlflowClient().get_run(run_id)
        assert run.data.tags[schema.TAG_METERS] == "cpu:estimate*cpu-time,ram:estimate*rss"
        assert run.data.tags[schema.TAG_SCOPE] == "cpu:process,ram:process"
        assert run.data.tags[schema.TAG_ESTIMATED] == "true"
        assert run.data.metrics[schema.ENERGY_KWH] > 0


def test_bad_configuration_fails_before_the_block_runs(mlflow_experiment: str) -> None:
    ran = []
    with pytest.raises(mlflow_green.ConfigError, match="PUE"):
        with mlflow_green.track(pue=-1):
            ran.append(True)
    assert not ran
    assert mlflow.active_run() is None


def test_the_final_log_keeps_each_steps_own_window_figures(mlflow_experiment: str) -> None:
    with mlflow_green.track(meters=[_meter()]) as t:
        t.log_step(0)
        t.log_step(1)
    client = MlflowClient()
    for key in (schema.EPOCH_ENERGY_KWH, schema.POWER_W):
        history = client.get_metric_history(t.run_id, key)
        assert sorted(m.step for m in history) == [0, 1], f"{key} was logged again at the end"
    totals = client.get_metric_history(t.run_id, schema.ENERGY_KWH)
    latest = max(totals, key=lambda m: (m.step, m.timestamp))
    assert latest.value == pytest.approx(t.measurement.energy_j / 3.6e6)


def test_a_broken_meter_plugin_never_breaks_the_tracked_block(mlflow_experiment: str) -> None:
    from mlflow_green.testing import registered_meters

    def explode() -> FakeMeter:
        raise RuntimeError("vendor SDK crashed")

    with registered_meters(explode):
        with mlflow_green.track() as t:
            pass
    run = MlflowClient().get_run(t.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[schema.TAG_METERS].startswith(("cpu:estimate", "cpu:rapl"))


def test_ctrl_c_marks_its_own_run_killed(mlflow_experiment: str) -> None:
    with pytest.raises(KeyboardInterrupt):
        with mlflow_green.track(meters=[_meter()]) as t:
            raise KeyboardInterrupt
    assert MlflowClient().get_run(t.run_id).info.status == "KILLED"


# -- the tracking server fails: bounded waiting, nothing billed for it, nothing raised ---------------
@pytest.fixture()
def server_down() -> str:
    """The current tracking URI is a server that does not answer; MLflow's retry settings are its defaults."""
    from mlflow_green.testing.server import free_port

    previous = mlflow.get_tracking_uri()
    uri = f"http://127.0.0.1:{free_port()}"
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(previous)


def _stop_writer(t: mlflow_green.TrackedRun) -> None:
    if t._recorder is not None:
        t._recorder.stop()


def test_a_dead_server_delays_the_block_at_most_the_start_and_end_timeouts_and_the_wait_is_not_billed(
    server_down: str, tmp_path: Path
) -> None:
    import time

    from mlflow_green.record.spool import default_spool_dir, spool_paths

    started = time.monotonic()
    with mlflow_green.track(meters=[_meter()], start_timeout_s=0.5, end_timeout_s=0.5) as t:
        time.sleep(1.0)
    elapsed_s = time.monotonic() - started
    _stop_writer(t)
    assert elapsed_s < 1.0 + 0.5 + 0.5 + 0.6, elapsed_s
    assert t.run_id is None, "the run could not be created"
    assert 1.0 <= t.measurement.duration_s < 1.2, "the meters measured the block, not the waiting"
    assert t.measurement.energy_j == pytest.approx(45.0 * t.measurement.duration_s, rel=0.01)
    [path] = spool_paths(default_spool_dir())
    assert '"op":"create"' in path.read_text() and '"op":"terminate"' in path.read_text()


def test_no_writable_spool_never_raises_and_everything_still_reaches_a_healthy_server(
    mlflow_experiment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("spool", "fallback"):
        (tmp_path / name).write_text("a file, not a folder")
    monkeypatch.setenv("MLFLOW_GREEN_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("MLFLOW_GREEN_SPOOL_FALLBACK_DIR", str(tmp_path / "fallback"))
    with mlflow_green.track(meters=[_meter()]) as t:
        t.log_step(0)
    run = MlflowClient().get_run(t.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics[schema.ENERGY_KWH] > 0
    problems = [r.getMessage() for r in caplog.records if "cannot write the spool" in r.getMessage()]
    assert len(problems) == 1 and "kept in memory only" in problems[0]
    assert not [r for r in caplog.records if "not sent yet" in r.getMessage()], "everything was sent: no loss to report"


@pytest.mark.parametrize(
    ("kwargs", "env", "named"),
    [
        ({"start_timeout_s": -1}, {}, "start_timeout_s"),
        ({"end_timeout_s": float("nan")}, {}, "end_timeout_s"),
        ({}, {"MLFLOW_GREEN_END_TIMEOUT_S": "soon"}, "MLFLOW_GREEN_END_TIMEOUT_S"),
        ({}, {"MLFLOW_GREEN_START_TIMEOUT_S": "1e9"}, "MLFLOW_GREEN_START_TIMEOUT_S"),
        ({}, {"MLFLOW_GREEN_RETRY_MAX_S": "0"}, "MLFLOW_GREEN_RETRY_MAX_S"),
    ],
)
def test_bad_timeouts_fail_at_construction_naming_where_they_came_from(
    kwargs: dict, env: dict, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(mlflow_green.ConfigError, match=named):
        mlflow_green.track(**kwargs)


def test_the_server_going_away_after_the_run_was_created_spools_every_write(
    mlflow_experiment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow_green.record.spool import default_spool_dir, spool_paths
    from mlflow_green.testing.server import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    healthy_uri = mlflow.get_tracking_uri()
    run = mlflow.start_run()
    mlflow.set_tracking_uri(f"http://127.0.0.1:{free_port()}")  # the server goes away
    try:
        with mlflow_green.track(meters=[_meter()], end_timeout_s=0.5) as t:
            t.log_step(0)
    finally:
        _stop_writer(t)
        mlflow.set_tracking_uri(healthy_uri)
        mlflow.end_run()
    assert t.run_id == run.info.run_id and t.measurement.energy_j > 0
    [path] = spool_paths(default_spool_dir())
    ops = [line for line in path.read_text().splitlines()[1:]]
    assert len(ops) == 4 and run.info.run_id in path.name  # step 0, the totals, the tags, the report


def test_a_server_that_never_answers_delays_the_block_at_most_the_bounds(tmp_path: Path) -> None:
    """A black hole: the connection is accepted by the kernel, no answer ever comes (MLflow waits 120 s per try)."""
    import socket
    import time

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"http://127.0.0.1:{hole.getsockname()[1]}")
    try:
        started = time.monotonic()
        with mlflow_green.track(meters=[_meter()], start_timeout_s=0.5, end_timeout_s=0.5) as t:
            time.sleep(0.2)
        elapsed_s = time.monotonic() - started
        _stop_writer(t)
    finally:
        mlflow.set_tracking_uri(previous)
        hole.close()
    assert elapsed_s < 0.2 + 0.5 + 0.5 + 0.6, elapsed_s
    assert t.run_id is None and t.measurement.duration_s < 0.4


class _QueuedGpu(FakeMeter):
    """A GPU whose energy counter counts finished work only: launched work runs asynchronously."""

    def __init__(self) -> None:
        super().__init__({"gpu:0": 0.0}, name="queued-gpu")
        self.queued_j = 0.0
        self.done_j = 0.0

    def launch(self, energy_j: float) -> None:  # a kernel launch returns at once; the GPU works later
        self.queued_j += energy_j

    def synchronize(self) -> None:  # torch.cuda.synchronize: wait for everything launched
        self.done_j += self.queued_j
        self.queued_j = 0.0

    def read(self, now_s: float) -> tuple:
        return tuple(replace(counter, energy_j=self.done_j) for counter in super().read(now_s))


def test_synchronize_bills_the_gpu_work_queued_in_a_step_to_that_step(mlflow_experiment: str) -> None:
    gpu = _QueuedGpu()
    with mlflow_green.track(meters=[gpu], synchronize=gpu.synchronize) as t:
        gpu.launch(30.0)
        first = t.log_step(0)
        gpu.launch(50.0)
    assert first.component_energy_j("gpu") == 30.0  # the step's own work, not left for the next window
    assert t.measurement.component_energy_j("gpu") == 80.0  # the block's last launch, read after it finished
    assert MlflowClient().get_run(t.run_id).data.metrics[schema.ENERGY_GPU_KWH] == pytest.approx(80.0 / 3.6e6)

    unsynchronised = _QueuedGpu()  # without it, the counters are read while the work is still queued
    with mlflow_green.track(meters=[unsynchronised]) as t2:
        unsynchronised.launch(30.0)
    assert t2.measurement.component_energy_j("gpu") == 0.0


def test_a_failing_synchronize_is_logged_once_and_never_raises_into_the_block(
        mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    with mlflow_green.track(meters=[_meter()], synchronize=broken) as t:
        t.log_step(0)
        t.log_step(1)
    assert MlflowClient().get_run(t.run_id).info.status == "FINISHED" and t.measurement.energy_j > 0
    warnings = [r for r in caplog.records if "synchronising the devices" in r.getMessage()]
    assert len(warnings) == 1 and "illegal memory access" in warnings[0].getMessage()


@pytest.mark.parametrize("synchronize", ["torch.cuda.synchronize", 1, True])
def test_synchronize_that_is_not_callable_fails_at_construction(mlflow_experiment: str, synchronize: object) -> None:
    with pytest.raises(mlflow_green.ConfigError, match="synchronize"):
        mlflow_green.track(synchronize=synchronize)
    assert MlflowClient().search_runs([mlflow_experiment]) == []


def test_a_step_shows_in_mlflow_while_the_block_runs_on_and_the_final_totals_follow_it(mlflow_experiment: str) -> None:
    import time

    from mlflow_green.training.held_step import RELEASE_AFTER_S

    client = MlflowClient()
    with mlflow_green.track(meters=[_meter()], region="FR") as t:
        t.log_step(0, samples=100)
        deadline = time.monotonic() + RELEASE_AFTER_S + 10.0
        while not client.get_metric_history(t.run_id, schema.ENERGY_KWH) and time.monotonic() < deadline:
            time.sleep(0.2)  # the block goes on after its last step (an evaluation, a save)
        assert [m.step for m in client.get_metric_history(t.run_id, schema.ENERGY_KWH)] == [0], "step 0 not live"
    history = client.get_metric_history(t.run_id, schema.ENERGY_KWH)
    assert sorted(m.step for m in history) == [0, 1]  # the final totals one step after the last (sent) one
    assert max(history, key=lambda m: m.step).value == pytest.approx(t.measurement.energy_j / 3.6e6)
    assert [m.step for m in client.get_metric_history(t.run_id, schema.EPOCH_ENERGY_KWH)] == [0]


def test_steps_only_go_up_a_step_logged_again_or_lower_goes_to_the_next_free_one(
        mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.WARNING, logger="mlflow_green"), mlflow_green.track(meters=[_meter()], region="FR") as t:
        for step in (0, 1, 2, 0, 1):  # a loop whose counter restarts
            t.log_step(step)
    steps = sorted(m.step for m in MlflowClient().get_metric_history(t.run_id, schema.ENERGY_KWH))
    assert steps == [0, 1, 2, 3, 4]
    assert sum("steps only go up" in r.getMessage() for r in caplog.records) == 1  # said once


def test_a_track_object_entered_again_measures_afresh_in_a_new_run(mlflow_experiment: str) -> None:
    block = mlflow_green.track(meters=[_meter()], region="FR")
    with block as first:
        first.log_step(0)
    first_run = block.run_id
    with block as second:  # raised TrackerStateError after creating a run, left RUNNING and active
        second.log_step(0)
    assert block.run_id != first_run and mlflow.active_run() is None
    for run_id in (first_run, block.run_id):
        assert MlflowClient().get_run(run_id).info.status == "FINISHED"
        assert [m.step for m in MlflowClient().get_metric_history(run_id, schema.ENERGY_KWH)] == [0]


def test_log_step_outside_the_block_logs_nothing_and_says_so(mlflow_experiment: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with mlflow_green.track(meters=[_meter()], region="FR") as t:
        t.log_step(0)
    with caplog.at_level(logging.WARNING, logger="mlflow_green"):
        assert t.log_step(1).energy_j == 0.0
    assert any("outside the track() block (it has ended): nothing logged" in r.getMessage() for r in caplog.records)
    assert [m.step for m in MlflowClient().get_metric_history(t.run_id, schema.ENERGY_KWH)] == [0]


def test_a_block_inside_a_block_gets_a_child_run(mlflow_experiment: str) -> None:
    with mlflow_green.track(meters=[_meter()], region="FR", run_name="outer") as outer:
        outer.log_step(0)
        with mlflow_green.track(meters=[_meter()], region="FR", run_name="inner") as inner:
            inner.log_step(0)
        outer.log_step(1)
    client = MlflowClient()
    child = client.get_run(inner.run_id)
    assert inner.run_id != outer.run_id and child.data.tags.get("mlflow.parentRunId") == outer.run_id
    assert child.info.run_name == "inner" and child.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(outer.run_id, schema.ENERGY_KWH)] == [0, 1]


def test_a_second_block_in_a_run_of_yours_already_measured_gets_a_child_run(mlflow_experiment: str) -> None:
    with mlflow.start_run() as mine:
        for _ in range(2):  # e.g. training, then fine-tuning, each in its own block
            with mlflow_green.track(meters=[_meter()], region="FR") as t:
                t.log_step(0)
                t.log_step(1)
        second = t.run_id
    client = MlflowClient()
    assert [m.step for m in client.get_metric_history(mine.info.run_id, schema.ENERGY_KWH)] == [0, 1]
    assert second != mine.info.run_id and client.get_run(second).data.tags.get("mlflow.parentRunId") == mine.info.run_id
    assert [m.step for m in client.get_metric_history(second, schema.ENERGY_KWH)] == [0, 1]


@pytest.mark.slow
def test_entering_a_block_never_waits_on_a_server_gone_away_more_than_the_start_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from mlflow_green.testing import OutageRelay
    from mlflow_green.testing.server import GreenServer

    monkeypatch.setenv("MLFLOW_GREEN_SPOOL_DIR", str(tmp_path / "spool"))
    previous_uri = mlflow.get_tracking_uri()
    try:
        with GreenServer(tmp_path / "server") as real, OutageRelay(real.url) as server:
            mlflow.set_tracking_uri(server.url)
            mlflow.set_experiment("gone-away")
            with mlflow.start_run():
                server.down()  # MLflow's own client retries for minutes: the block's check of the run must not
                started_s = time.monotonic()
                with mlflow_green.track(meters=[_meter()], region="FR", start_timeout_s=1.0, end_timeout_s=1.0) as t:
                    entered_s = time.monotonic() - started_s  # was 247 s
                    t.log_step(0)
                server.up()  # for the user's own end of the run (MLflow's, not ours, would wait and raise)
            assert entered_s < 1.0 + 1.0, f"entering took {entered_s:.1f} s"
    finally:
        mlflow.set_tracking_uri(previous_uri)
