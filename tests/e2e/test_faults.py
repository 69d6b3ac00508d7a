"""The fault suite: a real ``mlflow server`` stopped and started, real trainings (Keras, Lightning and
``track()``) paused, cut off and SIGKILLed, a spool folder that turns read-only, a full disk, and a
proxy that loses answers and returns 5xx/429/400. Short timeouts come from the configuration.

Each training is a child process (``fault_training.py``); what it prints on stderr is what a
user sees, and the recovery commands it prints are run as they are.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from fault_tools import Child, FolderFaults, spool_entries
from mlflow import MlflowClient
from mlflow.entities import ViewType
from packaging.version import Version

from mlflow_green.record import schema
from mlflow_green.record.spool import to_send
from mlflow_green.testing import OutageRelay
from mlflow_green.testing.server import GreenServer
from mlflow_green.training.deferred import COALESCE_S
from mlflow_green.training.termination import MAX_DEFER_S

pytestmark = pytest.mark.slow

END_TIMEOUT_S = 3.0
KINDS = ["track", "keras", "lightning"]


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutageRelay]:
    """A real server, reached through a relay: ``down()`` is an outage as the client sees a stopped
    server (connection refused, open connections cut), ``up()`` ends it in milliseconds, not the
    seconds a server restart takes."""
    with GreenServer(tmp_path_factory.mktemp("fault-server"), app_name=None) as running, OutageRelay(running.url) as relayed:
        yield relayed


@pytest.fixture()
def up(relay: OutageRelay) -> Iterator[OutageRelay]:
    """The server is reachable when the test starts (and left so)."""
    relay.up()
    yield relay
    relay.up()


@pytest.fixture()
def faults(tmp_path: Path) -> Iterator[FolderFaults]:
    folder_faults = FolderFaults(tmp_path)
    yield folder_faults
    folder_faults.undo()


def _env(server: OutageRelay, tmp_path: Path, experiment: str, *, mlflow_retries: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    home.chmod(0o777)
    return {
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_EXPERIMENT_NAME": experiment,
        "MLFLOW_GREEN_SPOOL_DIR": str(tmp_path / "spool"),
        "MLFLOW_GREEN_SPOOL_FALLBACK_DIR": str(tmp_path / "fallback"),
        "MLFLOW_GREEN_END_TIMEOUT_S": str(END_TIMEOUT_S),
        "MLFLOW_GREEN_RETRY_MAX_S": "0.5",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": mlflow_retries,
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "HOME": str(home),
        "KERAS_HOME": str(home / ".keras"),
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }


def _sync_command(message: str) -> list[str]:
    """The recovery command a message names, run with this environment's ``mlflow-green``."""
    found = re.search(r"`(mlflow-green sync [^`]+)`", message)
    assert found, message
    return [str(Path(sys.executable).with_name("mlflow-green")), *shlex.split(found.group(1))[1:]]


def _run_sync(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, env={**__import__("os").environ, **env}, timeout=180)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


def _the_run(client: MlflowClient, experiment: str, name: str):  # noqa: ANN202
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"experiment {experiment} was never created"
    runs = client.search_runs([found.experiment_id], f"attributes.run_name = '{name}'", run_view_type=ViewType.ACTIVE_ONLY)
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def _steps_once(client: MlflowClient, run_id: str, steps: int) -> None:
    history = client.get_metric_history(run_id, schema.EPOCH_ENERGY_KWH)
    assert sorted(m.step for m in history) == list(range(steps)), "each epoch arrived exactly once"


def _wait_for_run(client: MlflowClient, experiment: str, name: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            runs = client.search_runs([found.experiment_id], f"attributes.run_name = '{name}'")
            if runs and client.get_metric_history(runs[0].info.run_id, schema.EPOCH_ENERGY_KWH):
                return runs[0].info.run_id
        time.sleep(0.3)
    raise AssertionError("the background writer never created the run once the server was back")


@pytest.mark.parametrize("kind", KINDS)
def test_server_down_at_both_ends_and_a_spool_folder_turning_read_only(
    kind: str, up: OutageRelay, tmp_path: Path, faults: FolderFaults
) -> None:
    """Start: waits at most 2 s (the default), then spools the run's creation; the background writer
    creates the run once the server is back (track), or sync does (Keras, Lightning: the server stays
    down). The spool folder turns read-only: reported once, the
    writes go to the fallback folder, nothing raises. End: the server is down again; the fit waits at
    most the end timeout; the message counts what is left and names the command that sends it. The
    meters never bill the waiting."""
    server, experiment, name = up, f"faults-ends-{kind}", f"ends-{kind}"
    env = _env(server, tmp_path, experiment, mlflow_retries="2")
    faults.writable_by_child(tmp_path / "spool", tmp_path / "fallback", tmp_path / "home")
    back_mid_training = kind == "track"  # the other frameworks: the server stays down, sync creates the run
    server.down()
    child = Child({"kind": kind, "epochs": 4, "pause_at": [0, 1, 2], "run_name": name}, env, demote=faults.demote)
    child.wait_paused(0)
    client = MlflowClient(server.url)
    if back_mid_training:
        server.up()
        run_id = _wait_for_run(client, experiment, name)
    child.release()
    child.wait_paused(1)
    faults.make_read_only(tmp_path / "spool")
    child.release()
    child.wait_paused(2)
    if back_mid_training:
        server.down()
    child.release()
    result = child.result()
    print(f"\n{kind}: waited {result['bind_wait_s']:.2f} s entering the fit, {result['end_wait_s']:.2f} s leaving it "
          f"({result['after_last_epoch_s']:.2f} s from the last epoch's end to the return); "
          f"measured {result['measured_s']:.2f} s of a {result['fit_s']:.2f} s fit")
    assert result["run_id"] == (run_id if back_mid_training else None)
    assert result["bind_wait_s"] <= 2.0 + 1.0, result
    assert result["end_wait_s"] <= END_TIMEOUT_S + 1.5, result
    assert result["measured_s"] <= result["fit_s"] - result["bind_wait_s"] - result["end_wait_s"] + 1.0, result
    assert len(child.warnings("did not create the run within 2 s")) == 1
    [problem] = child.warnings("cannot write the spool")
    assert str(tmp_path / "spool") in problem and str(tmp_path / "fallback") in problem
    messages = child.warnings("not sent yet (")
    assert len(messages) == 1, messages
    message = messages[0]
    path, entries, done = spool_entries(tmp_path / "fallback")
    waiting = [e for e in to_send(entries, done) if e["op"] != "create"]
    sent, total, left = map(int, re.search(r": (\d+) of (\d+) writes? sent; (\d+) writes? not sent yet", message).groups())
    assert (left, sent + left) == (len(waiting), total), message
    assert f"kept in {path}" in message
    assert "Traceback" not in child.stderr

    server.up()
    synced = _run_sync(_sync_command(message), env)
    assert synced.returncode == 0, synced.stdout
    run = _the_run(client, experiment, name)
    assert f"run {run.info.run_id} on {server.url}:{'' if back_mid_training else ' created;'} {left} {'write' if left == 1 else 'writes'} sent." in synced.stdout
    assert run.info.status == "FINISHED" and run.data.tags[schema.TAG_RUN_TOKEN]
    _steps_once(client, run.info.run_id, 4)


@pytest.mark.parametrize("kind", KINDS)
def test_killed_while_the_server_is_down_is_ended_killed_by_sync(kind: str, up: OutageRelay, tmp_path: Path) -> None:
    server, experiment, name = up, f"faults-killed-{kind}", f"killed-{kind}"
    env = _env(server, tmp_path, experiment, mlflow_retries="0")
    child = Child({"kind": kind, "epochs": 5, "pause_at": [0, 1], "run_name": name}, env)
    child.wait_paused(0)
    server.down()
    child.release()
    paused = child.wait_paused(1)
    assert paused["spooled_s"] is not None and paused["spooled_s"] < COALESCE_S + 1.0, paused  # durable within 2 s
    child.kill()
    _, entries, _ = spool_entries(tmp_path / "spool")
    last_t_ms = max(e["t_ms"] for e in entries)

    server.up()
    synced = _run_sync([str(Path(sys.executable).with_name("mlflow-green")), "sync"], env)
    assert synced.returncode == 0, synced.stdout
    assert f"ended KILLED (its writer, pid {child.process.pid} on host" in synced.stdout
    client = MlflowClient(server.url)
    run = _the_run(client, experiment, name)
    assert (run.info.status, run.info.end_time) == ("KILLED", last_t_ms)
    _steps_once(client, run.info.run_id, 2)


@pytest.mark.parametrize("kind", ["keras", "lightning"])
def test_ctrl_c_while_the_run_waits_for_a_server_down_ends_one_run_killed_with_its_figures(
    kind: str, up: OutageRelay, tmp_path: Path
) -> None:
    """A Ctrl-C as the fit starts, while the callback waits for a server that is down to create its run (a start
    timeout of a minute), longer than mlflow-green defers a signal inside its own code: the interrupt waits for the
    run and is raised once measuring began — one run, ``KILLED``, with its figures. Before, it came out of the wait
    after 3 s: Keras's run ended ``KILLED`` with none (and, on a fresh sqlite store of a loaded machine, Lightning's
    run too, a second run holding the figures)."""
    server, experiment, name = up, f"faults-ctrl-c-{kind}", f"ctrl-c-{kind}"
    env = {**_env(server, tmp_path, experiment, mlflow_retries="0"), "MLFLOW_GREEN_START_TIMEOUT_S": "60"}
    server.down()
    child = Child({"kind": kind, "epochs": 50, "run_name": name, "ctrl_c_at_bind": True}, env)
    assert child.next_event()["event"] == "ctrl_c_sent"
    time.sleep(MAX_DEFER_S + 1.0)
    server.up()
    assert child.result()["interrupted"] in ("KeyboardInterrupt", "SystemExit")  # Lightning exits after its handling
    client = MlflowClient(server.url)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id], run_view_type=ViewType.ALL)
    assert [(r.info.run_name, r.info.status, schema.ENERGY_KWH in r.data.metrics, schema.TAG_METERS in r.data.tags)
            for r in runs] == [(name, "KILLED", True, True)]


def test_a_full_spool_disk_never_stops_track_or_sync(up: OutageRelay, tmp_path: Path, faults: FolderFaults) -> None:
    server, experiment = up, "faults-full"
    env = _env(server, tmp_path, experiment, mlflow_retries="0")
    client = MlflowClient(server.url)
    left_run = client.create_run(client.create_experiment("faults-full-left")).info.run_id

    def leave_a_spool(folder: Path) -> None:  # a dead writer's spool, written before the disk filled up
        from mlflow_green.record.spool import SpoolFile

        dead = {"host": __import__("socket").gethostname(), "boot_id": "", "pid": 2**22 + 23, "started_s": 1.0}
        spool = SpoolFile.create(folder, {"tracking_uri": server.url, "run_id": left_run, "writer": dead})
        for seq in (1, 2):
            spool.append({"seq": seq, "t_ms": seq, "op": "metrics", "metrics": [[schema.ENERGY_KWH, float(seq), seq, seq]]})
        spool.release()

    with faults.full(tmp_path / "spool", keep=leave_a_spool) as limit:
        command = [str(Path(sys.executable).with_name("mlflow-green")), "sync", "--tracking-uri", server.url,
                   "--spool-dir", str(tmp_path / "spool")]
        synced = subprocess.run(command, capture_output=True, text=True, preexec_fn=limit,
                                env={**__import__("os").environ, **env}, timeout=120)
        assert "Traceback" not in synced.stdout + synced.stderr
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert "2 writes sent" in synced.stdout
        assert [m.value for m in client.get_metric_history(left_run, schema.ENERGY_KWH)] == [1.0, 2.0]

        child = Child({"kind": "track", "epochs": 2, "run_name": "full"}, env, preexec=limit)
        result = child.result()
    [problem] = child.warnings("cannot write the spool")
    assert "No space left on device" in problem or "File too large" in problem
    run = client.get_run(result["run_id"])
    _steps_once(client, run.info.run_id, 2)
    if limit is None:  # a full tmpfs; under the file-size limit MLflow's own temporary files (the report) fail too
        assert run.info.status == "FINISHED"


def test_a_lost_answer_and_refusals_through_a_faulty_proxy(up: OutageRelay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow_green
    from mlflow_green.record.recorder import RunRecorder
    from mlflow_green.record.timeouts import RunTimeouts
    from mlflow_green.testing import FakeMeter
    from mlflow_green.testing.proxy import FaultyProxy

    previous = mlflow.get_tracking_uri()
    with FaultyProxy(up.url) as proxy:
        mlflow.set_tracking_uri(proxy.url)
        try:
            experiment_id = mlflow.set_experiment("faults-proxy").experiment_id
            client = MlflowClient(proxy.url)
            # MLflow's HTTP client resent a POST whose answer was lost until 3.18; since, it leaves a creation to us
            mlflow_resends = Version(mlflow.__version__).release < (3, 18)  # a 3.18 pre-release included
            rounds = [("0", "drop", 1), ("7", "drop", 2 if mlflow_resends else 1), ("0", "resend", 2)]
            for retries, fault, expected_creates in rounds:  # our retry; MLflow's default; a resend on the way
                name = f"lost-{retries}-{fault}"
                monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", retries)
                monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
                monkeypatch.setenv("MLFLOW_GREEN_RETRY_MAX_S", "0.2")
                creates = proxy.count("runs/create")
                (proxy.drop_answer if fault == "drop" else proxy.resend)("runs/create")
                with mlflow_green.track(run_name=name, meters=[FakeMeter({"cpu:0": 5.0})], start_timeout_s=10) as t:
                    pass
                assert t.run_id is not None
                [run] = client.search_runs([experiment_id], f"attributes.run_name = '{name}'")
                assert run.info.run_id == t.run_id and run.info.status == "FINISHED"
                assert proxy.count("runs/create") - creates == expected_creates, (name, proxy.seen[-12:])
                deleted = client.search_runs([experiment_id], f"attributes.run_name = '{name}'", run_view_type=ViewType.DELETED_ONLY)
                assert len(deleted) == expected_creates - 1  # the run made twice is kept once

            monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            run_id = client.create_run(experiment_id).info.run_id
            for status in (503, 503, 429):
                proxy.fail("runs/log-batch", status=status)
            recorder = RunRecorder(client, run_id, timeouts=RunTimeouts(start_s=0, end_s=20, retry_max_s=0.2))
            recorder.log_metrics({schema.ENERGY_KWH: 1.0}, step=0)
            recorder.flush()
            proxy.fail("runs/log-batch", status=400, message="refused on purpose")
            recorder.log_metrics({schema.ENERGY_KWH: 2.0}, step=1)
            recorder.flush()  # sent alone (writes queued together go in one batch: tests/record/test_batching.py)
            # writes the server took twice (resent on the way) or whose answer was lost: each kept once
            proxy.resend("runs/log-batch")
            recorder.log_metrics({schema.ENERGY_KWH: 3.0}, step=2)
            recorder.log_tags({schema.TAG_METERS: "cpu:estimate"})
            recorder.flush()
            proxy.drop_answer("runs/log-batch")
            proxy.resend("runs/update")
            recorder.log_metrics({schema.ENERGY_KWH: 4.0}, step=3)
            recorder.terminate("FINISHED")
            assert recorder.close() is True
            done_twice = [proxy.count(path, "forwarded 200, answer lost") for path in ("runs/log-batch", "runs/update")]
            assert done_twice == [1, 1] and proxy.count("runs/log-batch", "dropped") == 1, proxy.seen[-8:]
        finally:
            mlflow.set_tracking_uri(previous)
    assert len(recorder.failures) == 4 and "RemoteDisconnected" in recorder.failures[-1], recorder.failures  # the lost answer: retried
    steps = [(m.step, m.value) for m in MlflowClient(up.url).get_metric_history(run_id, schema.ENERGY_KWH)]
    assert sorted(steps) == [(0, 1.0), (2, 3.0), (3, 4.0)], "the refused write set aside; the next ones arrive, once each"
    run = MlflowClient(up.url).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags[schema.TAG_METERS] == "cpu:estimate"
    [rejected_file] = (tmp_path / "green-spool" / "rejected").glob("*.jsonl")
    [rejected] = [json.loads(line) for line in rejected_file.read_text().splitlines()]
    assert "refused on purpose" in rejected["reason"] and rejected["entry"]["metrics"][0][3] == 1


@pytest.mark.parametrize("then", ["retry_waits", "retry_unanswered"])
def test_the_end_of_a_fit_says_the_last_error_while_its_retry_waits_and_that_error_after_a_retry_left_unanswered(
    then: str, up: OutageRelay, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A write the server answers with a 503 (MLflow's own retries off), the end of the fit giving up before our retry
    went (``retry_waits``: the retry comes 1 s later) or while the retry goes unanswered (``retry_unanswered``): the
    closing warning gives the error the write got — after how long the unanswered retry has waited, in the second
    case —, never the bare "has not sent them yet"; the write arrives once the server answers again."""
    from mlflow_green.record.recorder import RunRecorder
    from mlflow_green.record.timeouts import RunTimeouts
    from mlflow_green.testing.proxy import FaultyProxy

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with FaultyProxy(up.url) as proxy:
        client = MlflowClient(proxy.url)
        run_id = client.create_run(client.create_experiment(f"closing-message-{then}")).info.run_id
        proxy.fail("runs/log-batch", status=503, message="busy on purpose")
        if then == "retry_unanswered":
            proxy.hold("runs/log-batch")
        recorder = RunRecorder(client, run_id, timeouts=RunTimeouts(start_s=0, end_s=0.2, retry_max_s=60))
        try:
            recorder.log_metrics({schema.ENERGY_KWH: 1.0}, step=0)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (
                    recorder.failures and (then == "retry_waits" or recorder.sending_since_s is not None)):
                time.sleep(0.01)
            assert recorder.close() is False
            [message] = [r.getMessage() for r in caplog.records if "not sent yet (" in r.getMessage()]
            reason = re.search(r"1 write not sent yet \((.*)\); kept in ", message)
            assert reason is not None, message
            if then == "retry_waits":
                assert reason.group(1).startswith("TEMPORARILY_UNAVAILABLE") and "busy on purpose" in reason.group(1), message
            else:
                waited = re.fullmatch(r"no answer yet to a request sent ([\d.]+) s ago \(MLflow's client may be retrying it\); "
                                      r"last error: TEMPORARILY_UNAVAILABLE.*busy on purpose.*", reason.group(1))
                assert waited is not None and float(waited.group(1)) < 10, message
            assert "this process keeps sending them while it runs" in message, message
            proxy.clear()  # the server answers again (a held request is let go unanswered: retried)
            deadline = time.monotonic() + 30
            while recorder.pending and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            recorder.stop()
    assert [m.value for m in MlflowClient(up.url).get_metric_history(run_id, schema.ENERGY_KWH)] == [1.0]
