"""Binding a run: bounded by the start timeout, spooled when MLflow does not answer, active when it does."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from mlflow_green.record import schema
from mlflow_green.record.replay import replay_file
from mlflow_green.record.runs import resolve_run
from mlflow_green.record.spool import spool_paths
from mlflow_green.record.timeouts import RunTimeouts
from mlflow_green.testing.server import free_port

QUICK = RunTimeouts(start_s=0.5, end_s=0.5, retry_max_s=0.2)


@pytest.fixture()
def down(monkeypatch: pytest.MonkeyPatch) -> str:
    """The current tracking URI is a server that is down; MLflow's retry settings are its defaults."""
    uri = f"http://127.0.0.1:{free_port()}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(previous)


def test_binding_waits_at_most_the_start_timeout_then_spools_the_creation(down: str, spool_dir: Path) -> None:
    started = time.monotonic()
    handle = resolve_run(run_name="offline", timeouts=QUICK)
    waited_s = time.monotonic() - started
    try:
        assert waited_s < QUICK.start_s + 0.4, waited_s
        assert handle.pending and handle.run_id is None and handle.owned
        assert mlflow.active_run() is None
        handle.recorder.log_tags({"a": "b"})
        started = time.monotonic()
        assert handle.finish("FINISHED") is False
        assert time.monotonic() - started < QUICK.end_s + 0.4
    finally:
        handle.recorder.stop()
    [path] = spool_paths(spool_dir)
    assert [line.split('"op":"')[1].split('"')[0] for line in path.read_text().splitlines()[1:]] == ["create", "tags", "terminate"]


def test_a_run_created_in_time_is_the_active_run_and_its_end_goes_through_the_writer(mlflow_experiment: str) -> None:
    handle = resolve_run(run_name="online", timeouts=QUICK)
    assert not handle.pending and handle.fluent
    assert mlflow.active_run().info.run_id == handle.run_id
    mlflow.log_param("from_user_code", 1)  # the user's own logging goes to the same run
    assert handle.finish("FAILED") is True
    assert mlflow.active_run() is None
    assert mlflow.last_active_run().info.run_id == handle.run_id
    run = MlflowClient().get_run(handle.run_id)
    assert run.info.status == "FAILED" and run.info.run_name == "online"
    assert run.data.params == {"from_user_code": "1"}
    assert run.data.tags[schema.TAG_RUN_TOKEN]
    assert "mlflow.user" in run.data.tags and "mlflow.source.name" in run.data.tags


def test_a_nested_run_keeps_its_parent_when_neither_could_be_created_yet(
    down: str, store: tuple[MlflowClient, str], spool_dir: Path
) -> None:
    client, experiment_id = store
    parent = resolve_run(run_name="parent", experiment_id=experiment_id, timeouts=QUICK)
    shared = resolve_run(timeouts=QUICK)  # a measurement inside the parent logs into it
    child = resolve_run(run_name="child", experiment_id=experiment_id, nested=True, timeouts=QUICK)
    assert shared.recorder is parent.recorder
    for handle in (child, shared, parent):
        handle.finish("FINISHED")
    parent.recorder.stop()
    child.recorder.stop()
    child_file, parent_file = sorted(spool_paths(spool_dir), key=lambda p: "child" not in p.read_text())
    first = replay_file(child_file, client_for=lambda uri: client, retries=0)
    assert first.outcome == "pending" and "parent run is not created yet" in (first.error or "")
    assert replay_file(parent_file, client_for=lambda uri: client).created
    assert replay_file(child_file, client_for=lambda uri: client).created
    runs = {r.info.run_name: r for r in client.search_runs([experiment_id])}
    assert runs["child"].data.tags["mlflow.parentRunId"] == runs["parent"].info.run_id
    assert {r.info.status for r in runs.values()} == {"FINISHED"}


def test_a_run_whose_creation_wait_is_interrupted_ends_killed_not_running(down: str, spool_dir: Path) -> None:
    """Ctrl-C while binding waits for the server to create the run: the run is queued to end ``KILLED`` before the
    ``KeyboardInterrupt`` goes on (it was left to be created ``RUNNING``, never ended)."""
    import signal
    import threading

    slow = RunTimeouts(start_s=30.0, end_s=0.5, retry_max_s=0.2)
    threading.Timer(0.3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
    started = time.monotonic()
    handle = None
    try:
        with pytest.raises(KeyboardInterrupt):
            handle = resolve_run(run_name="interrupted", timeouts=slow)
    finally:  # not interrupted (a failure): its run, still to be created, is not left pending for the tests after it
        if handle is not None:  # (on this thread's stack, every later block would measure into it)
            handle.finish("FAILED", timeout_s=0)
    assert time.monotonic() - started < 10.0  # not the whole start timeout
    assert mlflow.active_run() is None
    [path] = spool_paths(spool_dir)
    lines = path.read_text().splitlines()[1:]
    assert [line.split('"op":"')[1].split('"')[0] for line in lines] == ["create", "terminate"]
    assert '"KILLED"' in lines[-1]


def test_a_run_created_without_a_name_gets_one_of_mlflows_kind_drawn_without_pythons_global_random(
        mlflow_experiment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's store names a run with ``random.choice`` / ``random.randint`` of Python's global generator; none of
    those calls may come from this thread while mlflow-green creates its run (other threads of a test worker — a
    writer retrying against a stopped server, with urllib3's jitter — draw from it too, so its state is not compared)."""
    import random
    import threading

    from mlflow_green.record.creation import RunSpec, create_run

    here, drawn = threading.get_ident(), []
    for name in ("choice", "randint", "random", "shuffle", "randrange"):
        original = getattr(random, name)
        monkeypatch.setattr(random, name, lambda *a, _f=original, _n=name, **k: (
            drawn.append(_n) if threading.get_ident() == here else None, _f(*a, **k))[1])
    client = MlflowClient()
    names = {create_run(client, RunSpec(token=f"t{i}", experiment_id=mlflow_experiment)).run.info.run_name for i in range(5)}
    assert drawn == []  # a seeded training's later draws unchanged
    assert len(names) > 1 and all(len(name) <= 20 and len(name.split("-")) == 3 for name in names), names
    tagged = create_run(client, RunSpec(token="t9", experiment_id=mlflow_experiment, tags={"mlflow.runName": "mine"}))
    named = create_run(client, RunSpec(token="t10", experiment_id=mlflow_experiment, run_name="baseline"))
    assert (tagged.run.info.run_name, named.run.info.run_name) == ("mine", "baseline")
