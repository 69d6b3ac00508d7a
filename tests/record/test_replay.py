"""Replaying a spool file into a real store: the run created exactly once, refusals set aside, orphans ended.

The spool files are written by the real writer against an address where no server answers;
``replay_file`` then sends them to a real sqlite store (as ``mlflow-green sync`` does once the
server is back).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from mlflow_green.record import schema
from mlflow_green.record.ops import RunSpec
from mlflow_green.record.recorder import RunRecorder
from mlflow_green.record.replay import replay_file
from mlflow_green.record.spool import REJECTED_DIR, SpoolFile, spool_paths
from mlflow_green.record.timeouts import RunTimeouts

QUICK = RunTimeouts(start_s=0.0, end_s=0.3, retry_max_s=0.2)


def _offline_run(dead_uri: str, experiment_id: str, *, name: str = "offline", steps: int = 3, end: str | None = "FINISHED") -> RunSpec:
    """A training whose server never answered: the real writer spools the creation and every write."""
    spec = RunSpec(token=uuid.uuid4().hex, experiment_id=experiment_id, run_name=name,
                   tags={"mlflow.user": "tester", "team": "green"}, start_time_ms=1_700_000_000_000)
    recorder = RunRecorder.open(None, spec=spec, tracking_uri=dead_uri, owned=True, timeouts=QUICK)
    for step in range(steps):
        recorder.log_metrics({schema.ENERGY_KWH: 0.1 * (step + 1)}, step=step, timestamp_ms=1_700_000_001_000 + step)
    recorder.log_tags({schema.TAG_METERS: "cpu:estimate"})
    recorder.log_report({"schema_version": 1})
    if end:
        recorder.terminate(end)
    assert recorder.close() is False, "nothing can be sent to a dead server"
    recorder.stop()  # the training process ends
    return spec


def _runs_with_token(client: MlflowClient, experiment_id: str, token: str) -> list:
    return client.search_runs([experiment_id], f"tags.`{schema.TAG_RUN_TOKEN}` = '{token}'", run_view_type=ViewType.ALL)


def test_a_run_that_could_not_be_created_is_created_by_the_replay_with_everything_after_it(
    dead_uri: str, store: tuple[MlflowClient, str], spool_dir: Path
) -> None:
    client, experiment_id = store
    spec = _offline_run(dead_uri, experiment_id)
    [path] = spool_paths(spool_dir)
    assert json.loads(path.read_text().splitlines()[0])["tracking_uri"] == dead_uri

    result = replay_file(path, client_for=lambda uri: client)
    assert result.outcome == "done" and result.created and result.sent == 6, result
    [run] = _runs_with_token(client, experiment_id, spec.token)
    assert run.info.run_name == "offline"
    assert run.info.start_time == spec.start_time_ms
    assert run.info.status == "FINISHED"
    assert run.data.tags["team"] == "green" and run.data.tags[schema.TAG_METERS] == "cpu:estimate"
    history = client.get_metric_history(run.info.run_id, schema.ENERGY_KWH)
    assert sorted((m.step, m.value) for m in history) == [(0, 0.1), (1, pytest.approx(0.2)), (2, pytest.approx(0.3))]
    assert not spool_paths(spool_dir), "a fully sent spool file is deleted"


def test_a_creation_whose_answer_was_lost_is_found_by_its_token_not_made_twice(
    dead_uri: str, store: tuple[MlflowClient, str], spool_dir: Path
) -> None:
    client, experiment_id = store
    spec = _offline_run(dead_uri, experiment_id)
    # The creation request reached the server, which made the run, but the answer never came back.
    made = client.create_run(experiment_id, tags={schema.TAG_RUN_TOKEN: spec.token}).info.run_id
    [path] = spool_paths(spool_dir)
    result = replay_file(path, client_for=lambda uri: client)
    assert result.found and not result.created
    [run] = _runs_with_token(client, experiment_id, spec.token)
    assert run.info.run_id == made
    assert len(client.get_metric_history(made, schema.ENERGY_KWH)) == 3


def test_a_refused_write_is_set_aside_with_the_servers_message_and_the_next_ones_go_on(
    dead_uri: str, store: tuple[MlflowClient, str], spool_dir: Path
) -> None:
    client, experiment_id = store
    run_id = client.create_run(experiment_id).info.run_id
    recorder = RunRecorder.open(None, run_id, tracking_uri=dead_uri, timeouts=QUICK)
    recorder.log_metrics({"energy$kwh": 1.0}, step=0)  # refused by MLflow: invalid name
    recorder.log_metrics({schema.ENERGY_KWH: 2.0}, step=1)
    recorder.log_tags({schema.TAG_METERS: "cpu:estimate"})
    recorder.close()
    recorder.stop()
    [path] = spool_paths(spool_dir)

    result = replay_file(path, client_for=lambda uri: client)
    assert (result.outcome, result.sent, result.rejected) == ("done", 2, 1), result
    assert "INVALID_PARAMETER_VALUE" in result.reasons[0] and "energy$kwh" in result.reasons[0]
    data = client.get_run(run_id).data
    assert data.metrics == {schema.ENERGY_KWH: 2.0} and data.tags[schema.TAG_METERS] == "cpu:estimate"
    [kept] = [json.loads(line) for line in (spool_dir / REJECTED_DIR / path.name).read_text().splitlines()]
    assert kept["entry"]["metrics"][0][0] == "energy$kwh" and kept["run_id"] == run_id
    assert "Names may only contain" in kept["reason"]


def test_an_unreachable_server_leaves_everything_pending_for_next_time(dead_uri: str, store: tuple[MlflowClient, str], spool_dir: Path) -> None:
    _, experiment_id = store
    _offline_run(dead_uri, experiment_id)
    [path] = spool_paths(spool_dir)
    before = path.read_bytes()
    result = replay_file(path, client_for=MlflowClient, retries=1, backoff_s=0.01)
    assert result.outcome == "pending" and result.pending == 7  # the creation and six writes
    assert "Connection refused" in (result.error or "") or "Failed to establish" in (result.error or "")
    assert path.read_bytes() == before


def test_malformed_entries_are_set_aside_once_each_with_a_reason_and_the_rest_is_sent(
    dead_uri: str, store: tuple[MlflowClient, str], spool_dir: Path
) -> None:
    client, experiment_id = store
    run_id = client.create_run(experiment_id).info.run_id
    spool = SpoolFile.create(spool_dir, {"tracking_uri": dead_uri, "run_id": run_id})
    good = {"op": "metrics", "metrics": [[schema.ENERGY_KWH, 1.0, 1_700_000_000_000, 0]]}
    with spool.path.open("ab") as f:
        f.write(json.dumps({"seq": 1, "t_ms": 1, **good}).encode() + b"\n")
        f.write(b'{"seq": 2, "op": "tags", "tags": {"k": "\xff\xfe"}}\n')  # not UTF-8
        f.write(json.dumps({"seq": "three", "op": "tags", "tags": {}}).encode() + b"\n")  # bad seq
        f.write(json.dumps({"seq": 1, "op": "tags", "tags": {"a": "b"}}).encode() + b"\n")  # seq goes back
        f.write(json.dumps({"seq": 5, "op": "explode"}).encode() + b"\n")  # unknown operation
        f.write(json.dumps({"seq": 6, "t_ms": 2, "op": "tags", "tags": {"green.version": "9"}}).encode() + b"\n")
        f.write(b'{"seq": 7, "op": "ta')  # torn by a crash
    spool.release()

    result = replay_file(spool.path, client_for=lambda uri: client)
    assert (result.sent, result.rejected) == (2, 5), result
    reasons = [json.loads(line)["reason"] for line in (spool_dir / REJECTED_DIR / spool.path.name).read_text().splitlines()]
    assert any("not UTF-8" in r for r in reasons) and any("seq must be an integer" in r for r in reasons)
    assert any("does not follow" in r for r in reasons) and any("unknown operation 'explode'" in r for r in reasons)
    assert any("incomplete line" in r for r in reasons)
    run = client.get_run(run_id)
    assert run.data.metrics[schema.ENERGY_KWH] == 1.0 and run.data.tags["green.version"] == "9"


def test_a_killed_writers_run_is_ended_killed_at_its_last_point_unless_it_already_ended(
    dead_uri: str, store: tuple[MlflowClient, str], spool_dir: Path
) -> None:
    client, experiment_id = store
    dead_writer = {"host": __import__("socket").gethostname(), "boot_id": "", "pid": 2**22 + 17, "started_s": 1.0}
    ended_before = client.create_run(experiment_id)
    client.set_terminated(ended_before.info.run_id, "FINISHED", end_time=1_700_000_009_999)
    for run in (client.create_run(experiment_id), ended_before):
        spool = SpoolFile.create(spool_dir, {"tracking_uri": dead_uri, "run_id": run.info.run_id, "owned": True, "writer": dead_writer})
        spool.append({"seq": 1, "t_ms": 1_700_000_005_000, "op": "metrics",
                      "metrics": [[schema.ENERGY_KWH, 1.0, 1_700_000_005_000, 0]]})
        spool.release()
        result = replay_file(spool.path, client_for=lambda uri: client)
        info = client.get_run(run.info.run_id).info
        if run is ended_before:
            assert (info.status, info.end_time) == ("FINISHED", 1_700_000_009_999), "a run that ended is never overwritten"
        else:
            assert result.ended and "is gone" in result.ended
            assert (info.status, info.end_time) == ("KILLED", 1_700_000_005_000)
    assert not spool_paths(spool_dir)


def test_a_run_whose_writer_still_runs_is_sent_but_not_ended(dead_uri: str, store: tuple[MlflowClient, str], spool_dir: Path) -> None:
    client, experiment_id = store
    run_id = client.create_run(experiment_id).info.run_id
    spool = SpoolFile.create(spool_dir, {"tracking_uri": dead_uri, "run_id": run_id, "owned": True})  # this process
    spool.append({"seq": 1, "t_ms": 1, "op": "tags", "tags": {"a": "b"}})
    spool.release()  # unlocked, but its writer (this process) is alive
    result = replay_file(spool.path, client_for=lambda uri: client)
    assert result.outcome == "kept" and result.sent == 1
    assert any("still runs" in note for note in result.notes)
    assert client.get_run(run_id).info.status == "RUNNING"
    assert spool.path.exists(), "kept for a later sync, once its writer is gone"


def test_a_file_locked_by_a_live_writer_is_skipped(dead_uri: str, store: tuple[MlflowClient, str], spool_dir: Path) -> None:
    client, experiment_id = store
    run_id = client.create_run(experiment_id).info.run_id
    recorder = RunRecorder.open(None, run_id, tracking_uri=dead_uri, timeouts=QUICK)
    recorder.log_tags({"a": "b"})
    [path] = spool_paths(spool_dir)
    started = time.monotonic()
    try:
        assert replay_file(path, client_for=lambda uri: client).outcome == "busy"
        assert time.monotonic() - started < 1.0
        assert "a" not in client.get_run(run_id).data.tags
    finally:
        recorder.stop()
    assert replay_file(path, client_for=lambda uri: client).outcome == "done", "once its writer stopped"
    assert client.get_run(run_id).data.tags["a"] == "b"


def test_a_run_created_twice_by_mlflows_own_resend_is_kept_once(
    dead_uri: str, store: tuple[MlflowClient, str], spool_dir: Path
) -> None:
    """A request whose answer was lost is resent on the way (MLflow's HTTP client did so before 3.18; a gateway may):
    the server may have made the run twice."""
    client, experiment_id = store
    spec = _offline_run(dead_uri, experiment_id)
    first, second = (client.create_run(experiment_id, start_time=spec.start_time_ms + i, tags={schema.TAG_RUN_TOKEN: spec.token})
                     for i in range(2))
    [path] = spool_paths(spool_dir)
    assert replay_file(path, client_for=lambda uri: client).found
    [kept] = client.search_runs([experiment_id], f"tags.`{schema.TAG_RUN_TOKEN}` = '{spec.token}'")
    assert kept.info.run_id == first.info.run_id
    assert client.get_run(second.info.run_id).info.lifecycle_stage == "deleted"


def test_a_replay_interrupted_before_its_progress_was_recorded_sends_nothing_twice(
    dead_uri: str, store: tuple[MlflowClient, str], spool_dir: Path
) -> None:
    client, experiment_id = store
    _offline_run(dead_uri, experiment_id)
    [path] = spool_paths(spool_dir)
    content, state = path.read_bytes(), path.with_name(path.name[: -len(".jsonl")] + ".state")
    first = replay_file(path, client_for=lambda uri: client)
    path.write_bytes(content)  # as if the replay died after sending, before recording anything
    state.unlink(missing_ok=True)
    second = replay_file(path, client_for=lambda uri: client)
    assert first.created and second.found
    runs = client.search_runs([experiment_id], run_view_type=ViewType.ALL)
    assert len(runs) == 1
    assert len(client.get_metric_history(runs[0].info.run_id, schema.ENERGY_KWH)) == 3


def test_held_values_are_sent_only_when_their_writer_died_holding_them(
    dead_uri: str, store: tuple[MlflowClient, str], spool_dir: Path
) -> None:
    """The callbacks hold a step's values until the step is complete (one point per step)."""
    client, experiment_id = store
    run_ids = [client.create_run(experiment_id).info.run_id for _ in range(2)]
    for run_id, completed in zip(run_ids, (True, False)):
        recorder = RunRecorder.open(None, run_id, tracking_uri=dead_uri, timeouts=QUICK)
        recorder.log_metrics({schema.ENERGY_KWH: 1.0}, step=0)
        recorder.hold_metrics({schema.ENERGY_KWH: 2.0}, step=1)  # epoch 1 ended
        recorder.hold_metrics({schema.ENERGY_KWH: 2.5}, step=1)  # and a later value at the same step
        if completed:
            recorder.log_metrics({schema.ENERGY_KWH: 3.0}, step=1)  # the fit's final totals at that step
        recorder.close()
        recorder.stop()  # the process ends (or is killed, holding step 1)
    for path in spool_paths(spool_dir):
        assert replay_file(path, client_for=lambda uri: client).outcome == "done"
    for run_id, final in zip(run_ids, (3.0, 2.5)):
        points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, schema.ENERGY_KWH))
        assert points == [(0, 1.0), (1, final)], "one point per step, the step's last values"
