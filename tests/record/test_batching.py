"""The writer sends consecutive metrics and tags in one ``log_batch``; a refusal still sets aside only the bad write.

The client is a real ``MlflowClient`` on a real sqlite store that counts its calls and, while a
gate is closed, holds the first one (so that the next writes queue up behind it, as they do
when the server is slower than the training).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from mlflow_green.measure.tracker import EnergyTracker
from mlflow_green.record import schema
from mlflow_green.record.ops import LeadingBatch
from mlflow_green.record.recorder import RunRecorder
from mlflow_green.record.runs import RunHandle
from mlflow_green.record.send_loop import SEND_INTERVAL_S
from mlflow_green.record.spool import REJECTED_DIR, spool_paths
from mlflow_green.record.spool_format import parse_entries, read_state
from mlflow_green.record.timeouts import RunTimeouts
from mlflow_green.testing import FakeMeter
from mlflow_green.training.session import TrainingSession

QUICK = RunTimeouts(start_s=2.0, end_s=10.0, retry_max_s=0.2)
GATHER_S = 1.5
"""The ``gathering`` fixture's send interval (``MLFLOW_GREEN_SEND_INTERVAL_S``): short, so that waiting for it is short."""


class CountingClient(MlflowClient):
    """A real client that records each store call and can hold them until :attr:`gate` is set."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.calls: list[tuple[str, int, int]] = []
        self.log_batch_began_s: list[float] = []  # time.monotonic() when each log_batch went to the store
        self.gate = threading.Event()
        self.gate.set()
        self.holding = threading.Event()

    def _hold(self) -> None:
        if not self.gate.is_set():
            self.holding.set()
            assert self.gate.wait(10.0)

    def log_batch(self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = (), **kwargs: Any) -> Any:
        self._hold()
        self.log_batch_began_s.append(time.monotonic())
        try:
            return super().log_batch(run_id, metrics=metrics, params=params, tags=tags, **kwargs)
        finally:  # recorded once the store has it: a test that sees the call may read the values
            self.calls.append(("log_batch", len(metrics), len(tags)))

    def log_dict(self, run_id: str, dictionary: dict[str, Any], artifact_file: str) -> None:
        self._hold()
        try:
            super().log_dict(run_id, dictionary, artifact_file)
        finally:
            self.calls.append(("log_dict", 0, 0))

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        self._hold()
        try:
            super().set_terminated(run_id, status=status, end_time=end_time)
        finally:
            self.calls.append(("set_terminated", 0, 0))


@pytest.fixture()
def counting(store: tuple[MlflowClient, str]) -> tuple[CountingClient, str]:
    client, experiment_id = store
    counting = CountingClient(client.tracking_uri)
    return counting, counting.create_run(experiment_id).info.run_id


def _queued_behind_a_held_write(client: CountingClient, recorder: RunRecorder) -> None:
    client.gate.clear()
    recorder.log_metrics({schema.ENERGY_KWH: 0.5}, step=0)
    assert client.holding.wait(10.0), "the writer took the first write"


def test_writes_queued_behind_a_slow_one_go_in_one_log_batch_later_tag_values_winning(
    counting: tuple[CountingClient, str], spool_dir: Path
) -> None:
    client, run_id = counting
    recorder = RunRecorder(client, run_id, timeouts=QUICK)
    _queued_behind_a_held_write(client, recorder)
    recorder.log_metrics({schema.ENERGY_KWH: 1.0, schema.POWER_W: 40.0}, step=1)
    recorder.log_tags({schema.TAG_METERS: "cpu:first", schema.TAG_SCOPE: "cpu:process"})
    recorder.log_tags({schema.TAG_METERS: "cpu:estimate"})
    recorder.log_report({"schema_version": 1})
    recorder.log_metrics({schema.ENERGY_KWH: 2.0}, step=2)
    client.gate.set()
    assert recorder.close() is True
    assert client.calls == [("log_batch", 1, 0), ("log_batch", 2, 2), ("log_dict", 0, 0), ("log_batch", 1, 0)]
    run = client.get_run(run_id)
    assert run.data.tags[schema.TAG_METERS] == "cpu:estimate" and run.data.tags[schema.TAG_SCOPE] == "cpu:process"
    history = client.get_metric_history(run_id, schema.ENERGY_KWH)
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 1.0), (2, 2.0)]
    assert recorder.counts.sent == 6 and not spool_paths(spool_dir)


def test_a_refused_write_inside_a_batch_is_set_aside_alone_and_the_others_arrive(
    counting: tuple[CountingClient, str], spool_dir: Path
) -> None:
    client, run_id = counting
    recorder = RunRecorder(client, run_id, timeouts=QUICK)
    _queued_behind_a_held_write(client, recorder)
    recorder.log_metrics({schema.ENERGY_KWH: 1.0}, step=1)
    recorder.log_metrics({"energy$kwh": 1.0}, step=1)  # MLflow refuses this name
    recorder.log_tags({schema.TAG_METERS: "cpu:estimate"})
    client.gate.set()
    assert recorder.close() is True
    assert client.calls[:2] == [("log_batch", 1, 0), ("log_batch", 2, 1)]  # tried together, refused
    assert client.calls[2:] == [("log_batch", 1, 0), ("log_batch", 1, 0), ("log_batch", 0, 1)]  # then one by one
    run = client.get_run(run_id)
    assert run.data.metrics[schema.ENERGY_KWH] == 1.0 and run.data.tags[schema.TAG_METERS] == "cpu:estimate"
    assert "energy$kwh" not in run.data.metrics
    [rejected] = list((spool_dir / REJECTED_DIR).iterdir())
    assert "energy$kwh" in rejected.read_text() and recorder.counts.sent == 3 and recorder.counts.rejected == 1


def test_the_end_of_a_fit_is_one_log_batch_and_the_report_then_the_runs_end(
    counting: tuple[CountingClient, str], spool_dir: Path
) -> None:
    client, run_id = counting
    session = TrainingSession(framework="keras", tracker=EnergyTracker(meters=[FakeMeter({"cpu:0": 50.0})]))
    session.bind_run(RunHandle(client, run_id, owned=True, timeouts=QUICK))
    session.begin_fit(planned_epochs=2)
    for epoch in range(2):
        session.begin_epoch(epoch)
        time.sleep(0.02)
        session.end_epoch(epoch, logs={"accuracy": 0.9}, train_samples=100)
    time.sleep(0.2)  # the epochs' writes are sent meanwhile
    client.calls.clear()
    session.end_fit("FINISHED")
    assert [name for name, _, _ in client.calls] == ["log_batch", "log_dict", "set_terminated"]
    [(_, final_metrics, tags)] = [call for call in client.calls if call[0] == "log_batch"]
    assert final_metrics >= 10 and tags >= 5
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags[schema.TAG_METERS]
    energy = client.get_metric_history(run_id, schema.ENERGY_KWH)
    assert [m.step for m in energy] == [0, 1]  # the totals at the last step, once


@pytest.fixture()
def gathering(request: pytest.FixtureRequest, counting: tuple[CountingClient, str], spool_dir: Path) -> tuple[CountingClient, str, RunRecorder]:
    """A recorder whose first write (step 0) was sent: the next ones gather for the send interval
    (:data:`GATHER_S`, or the test's indirect parameter)."""
    client, run_id = counting
    recorder = RunRecorder(client, run_id, timeouts=replace(QUICK, send_interval_s=getattr(request, "param", GATHER_S)))
    recorder.log_metrics({schema.ENERGY_KWH: 0.1}, step=0)
    deadline = time.monotonic() + 10
    while not client.calls and time.monotonic() < deadline:  # the first write goes at once
        time.sleep(0.01)
    assert client.calls == [("log_batch", 1, 0)]
    time.sleep(0.2)  # its send completed
    return client, run_id, recorder


def test_while_training_writes_gather_for_the_send_interval_and_a_flush_sends_at_once(
    gathering: tuple[CountingClient, str, RunRecorder], spool_dir: Path
) -> None:
    """Epochs shorter than the send interval share one request (a sqlite ``log_batch`` costs ~11 ms of
    CPU a call); each point is in the spool at once, and a flush does not wait for the interval."""
    client, run_id, recorder = gathering
    interval_s = recorder.timeouts.send_interval_s
    started = time.monotonic()
    for step in range(1, 6):  # five short epochs
        recorder.log_metrics({schema.ENERGY_KWH: 0.1 * (step + 1), schema.POWER_W: 40.0}, step=step)
        time.sleep(0.05)
    spooled = parse_entries(spool_paths(spool_dir)[0].read_bytes()).entries
    assert [e["metrics"][0][3] for e in spooled if e.get("op") == "metrics"] == [0, 1, 2, 3, 4, 5]  # all kept already
    assert client.calls == [("log_batch", 1, 0)] and time.monotonic() - started < interval_s  # none sent yet
    flushed_at = time.monotonic()
    assert recorder.flush(timeout_s=10.0)
    assert time.monotonic() - flushed_at < interval_s / 2  # a flush does not wait for the interval
    assert client.calls == [("log_batch", 1, 0), ("log_batch", 10, 0)]  # the five epochs in one request
    recorder.log_metrics({schema.ENERGY_KWH: 0.9}, step=6)
    deadline = time.monotonic() + interval_s + 10
    while len(client.calls) < 3 and time.monotonic() < deadline:  # sent without a flush, within the interval
        time.sleep(0.05)
    assert client.calls[2] == ("log_batch", 1, 0)
    assert [(m.step, round(m.value, 6)) for m in client.get_metric_history(run_id, schema.ENERGY_KWH)] == [
        (s, round(0.1 * (s + 1), 6)) for s in range(6)] + [(6, 0.9)]
    assert recorder.close() is True


def test_a_send_interval_of_zero_sends_each_write_as_it_comes(
    counting: tuple[CountingClient, str], spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``MLFLOW_GREEN_SEND_INTERVAL_S=0``: nothing gathers, each epoch's points reach MLflow at once."""
    monkeypatch.setenv("MLFLOW_GREEN_SEND_INTERVAL_S", "0")
    client, run_id = counting
    recorder = RunRecorder(client, run_id)
    for step in range(3):
        logged_at = time.monotonic()
        recorder.log_metrics({schema.ENERGY_KWH: float(step)}, step=step)
        while len(client.calls) <= step and time.monotonic() - logged_at < 10:
            time.sleep(0.01)
        assert time.monotonic() - logged_at < SEND_INTERVAL_S / 2, f"step {step} waited for an interval"
    assert client.calls == [("log_batch", 1, 0)] * 3
    assert recorder.close() is True


@pytest.mark.parametrize("gathering", [SEND_INTERVAL_S], indirect=True)  # the default: a producer far faster
def test_more_than_one_request_of_writes_is_sent_without_waiting_for_the_interval(
    gathering: tuple[CountingClient, str, RunRecorder],
) -> None:
    """A producer faster than one request per interval (per-step logging of many values) never lets the
    queue grow: once the writes exceed one ``log_batch`` (1 000 metrics) they go at once, in full requests."""
    client, run_id, recorder = gathering
    started = time.monotonic()
    for step in range(1, 61):  # 60 steps × 25 values = 1 500 metrics, within a fraction of the interval
        recorder.log_metrics({f"{schema.METRIC_PREFIX}value_{i}": float(step + i) for i in range(25)}, step=step)
    # until the store has them (a call is recorded once it returns; in one full run on a busy machine they had not
    # all returned 15 s after the writes were logged); when each request went is what is checked below
    while sum(n for _, n, _ in client.calls) < 1001 and time.monotonic() - started < 60:
        time.sleep(0.01)
    assert client.calls[1] == ("log_batch", 1000, 0)  # a full request first
    # not held for the interval: sent at once (when it went, not when the store was done: a busy machine's sqlite
    # can take seconds to write 1 000 metrics)
    full = [call for call in client.calls if call[0] == "log_batch"].index(("log_batch", 1000, 0))
    assert client.log_batch_began_s[full] - started < SEND_INTERVAL_S * 0.8
    assert recorder.flush(timeout_s=10.0)
    assert sum(n for _, n, _ in client.calls) == 1501
    assert len(client.get_metric_history(run_id, f"{schema.METRIC_PREFIX}value_0")) == 60
    assert recorder.close() is True


def test_a_refused_gathered_batch_is_sent_one_by_one_at_once_not_one_per_interval(
    gathering: tuple[CountingClient, str, RunRecorder],
) -> None:
    client, run_id, recorder = gathering
    interval_s = recorder.timeouts.send_interval_s
    started = time.monotonic()
    for step in range(1, 6):
        recorder.log_metrics({schema.ENERGY_KWH: float(step)}, step=step)
    recorder.log_metrics({"energy$kwh": 1.0}, step=6)  # MLflow refuses this name: the batch is refused
    deadline = started + 3 * interval_s
    while recorder.pending and time.monotonic() < deadline:  # no flush: the writer alone
        time.sleep(0.05)
    assert recorder.pending == 0 and time.monotonic() - started < 2 * interval_s  # one interval, then at once
    assert [m.step for m in client.get_metric_history(run_id, schema.ENERGY_KWH)] == [0, 1, 2, 3, 4, 5]
    assert recorder.counts.rejected == 1
    assert recorder.close() is True


def test_a_writer_stopped_while_gathering_sends_nothing_more_and_keeps_it_spooled(
    gathering: tuple[CountingClient, str, RunRecorder], spool_dir: Path,
) -> None:
    """``stop()`` is what the end of the process does to the writer: what was not sent stays in the spool
    (for ``mlflow-green sync``), it is not sent behind the stop's back."""
    client, run_id, recorder = gathering
    for step in range(1, 4):
        recorder.log_metrics({schema.ENERGY_KWH: float(step)}, step=step)
    time.sleep(0.3)  # the writer is gathering them
    recorder.stop()
    time.sleep(recorder.timeouts.send_interval_s)  # past the interval: a writer not stopped would send them
    assert [m.step for m in client.get_metric_history(run_id, schema.ENERGY_KWH)] == [0]
    [spooled] = spool_paths(spool_dir)
    entries = parse_entries(spooled.read_bytes()).entries
    assert [e["metrics"][0][3] for e in entries if e.get("op") == "metrics"] == [0, 1, 2, 3]  # all kept for a sync


def test_writes_gathering_when_the_interpreter_exits_are_sent_at_exit(store: tuple[MlflowClient, str], tmp_path: Path) -> None:
    """A script that logs and exits without closing its writer: the gathered writes go out at exit (within
    a second), not only with the next ``mlflow-green sync``."""
    client, experiment_id = store
    run_id = client.create_run(experiment_id).info.run_id
    script = (
        "import sys, time\n"
        "from mlflow import MlflowClient\n"
        "from mlflow_green.record.recorder import RunRecorder\n"
        "recorder = RunRecorder(MlflowClient(sys.argv[1]), sys.argv[2])\n"
        "recorder.log_metrics({'green/energy_kwh': 0.0}, step=0)\n"
        "time.sleep(1.0)\n"  # sent; the next ones gather
        "for step in range(1, 6):\n"
        "    recorder.log_metrics({'green/energy_kwh': float(step)}, step=step)\n"
    )
    env = {**os.environ, "MLFLOW_GREEN_SPOOL_DIR": str(tmp_path / "spool")}
    done = subprocess.run([sys.executable, "-c", script, client.tracking_uri, run_id], env=env, timeout=60,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [m.step for m in client.get_metric_history(run_id, schema.ENERGY_KWH)] == [0, 1, 2, 3, 4, 5]
    [spooled] = spool_paths(tmp_path / "spool")  # the writer was not closed: its file stays, all of it done
    done_seq, _, _ = read_state(spooled.with_name(spooled.name[: -len(".jsonl")] + ".state"), spooled)
    assert done_seq == max(e["seq"] for e in parse_entries(spooled.read_bytes()).entries)


def _leading_batch_by_hand(queue: list[dict[str, Any]]) -> int:
    """The leading entries one log_batch carries, counted from scratch (MLflow's 1 000 metrics, 100 tags)."""
    metrics = tags = count = 0
    for entry in queue:
        if entry["op"] not in ("metrics", "tags") or entry.get("held"):
            break
        metrics += len(entry.get("metrics", ()))
        tags += len(entry.get("tags", {}))
        if count and (metrics > 1000 or tags > 100):
            break
        count += 1
    return max(count, 1)


def test_the_writer_s_batch_size_kept_up_to_date_equals_counting_the_queue_again() -> None:
    """The writer counts what one request carries as writes arrive and leave, not by walking the queue
    at every write; over a random mix of writes, sends and limits it says what a fresh count says."""
    rng = random.Random(7)
    queue: deque[dict[str, Any]] = deque()
    leading = LeadingBatch()
    for seq in range(4000):
        kind = rng.choices(["metrics", "tags", "held", "report"], weights=[60, 25, 5, 3])[0]
        if kind == "tags":
            entry: dict[str, Any] = {"op": "tags", "tags": {f"t{i}": "v" for i in range(rng.randint(1, 40))}}
        elif kind == "report":
            entry = {"op": "report", "report": {}}
        else:
            entry = {"op": "metrics", "metrics": [["m", 1.0, 0, seq]] * rng.randint(1, 300), "held": kind == "held"}
        queue.append(entry)
        if rng.random() < 0.15:  # a send takes the head's batch
            for _ in range(leading.size(queue)):
                queue.popleft()
        expected = _leading_batch_by_hand(list(queue))
        assert leading.size(queue) == expected
