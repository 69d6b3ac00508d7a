"""Writes handed to the writer thread (``background=True``, what the callbacks do at every epoch):
in the spool within milliseconds, in order with every other write, sent, and signed."""

from __future__ import annotations

import json
import time
from pathlib import Path

from mlflow import MlflowClient

from mlflow_green.record import schema
from mlflow_green.record.recorder import RunRecorder
from mlflow_green.record.spool import spool_paths
from mlflow_green.record.timeouts import RunTimeouts

QUICK = RunTimeouts(start_s=0.0, end_s=0.5, retry_max_s=0.2)


def _spooled_ops(spool_dir: Path) -> list[tuple[str, bool]]:
    [path] = spool_paths(spool_dir)
    entries = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    return [(e["op"], bool(e.get("held"))) for e in entries]


def test_a_handed_over_hold_is_in_the_spool_within_milliseconds_without_any_other_call(
    spool_dir: Path, dead_uri: str
) -> None:
    recorder = RunRecorder(None, "a" * 32, tracking_uri=dead_uri, timeouts=QUICK)
    try:
        recorder.hold_metrics({schema.ENERGY_KWH: 1.0}, step=0, background=True)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not spool_paths(spool_dir):
            time.sleep(0.005)
        while time.monotonic() < deadline and _spooled_ops(spool_dir) != [("metrics", True)]:
            time.sleep(0.005)
        assert _spooled_ops(spool_dir) == [("metrics", True)]  # the writer thread kept it: a kill now keeps the step
    finally:
        recorder.close()
        recorder.stop()


def test_handed_over_and_direct_writes_keep_their_order_and_their_timestamps(spool_dir: Path, dead_uri: str) -> None:
    recorder = RunRecorder(None, "b" * 32, tracking_uri=dead_uri, timeouts=QUICK)
    try:
        before_ms = int(time.time() * 1000)
        recorder.log_metrics({schema.ENERGY_KWH: 1.0}, step=0, background=True)
        recorder.hold_metrics({schema.ENERGY_KWH: 2.0}, step=1, background=True)
        recorder.log_tags({schema.TAG_METERS: "cpu:estimate"})  # direct: after what was handed over
        recorder.log_metrics({schema.ENERGY_KWH: 2.5}, step=1, background=True)
        assert recorder.pending >= 3  # pending counts what was handed over
        ops = _spooled_ops(spool_dir)
        assert ops == [("metrics", False), ("metrics", True), ("tags", False), ("metrics", False)], ops
        [path] = spool_paths(spool_dir)
        entries = [json.loads(line) for line in path.read_text().splitlines()[1:]]
        assert [e["seq"] for e in entries] == [1, 2, 3, 4]
        assert entries[3]["releases"] == entries[1]["seq"]  # the step's final values release the held ones
        assert all(before_ms <= e["t_ms"] <= int(time.time() * 1000) for e in entries)
        timestamps = [row[2] for e in entries if e["op"] == "metrics" and not e.get("held") for row in e["metrics"]]
        assert timestamps == sorted(timestamps) and len(set(timestamps)) == 2
    finally:
        recorder.close()
        recorder.stop()


def test_handed_over_metrics_reach_the_store_and_close_waits_for_them(tracking_uri: str, store: tuple[MlflowClient, str]) -> None:
    client, experiment_id = store
    run_id = client.create_run(experiment_id).info.run_id
    recorder = RunRecorder(client, run_id, timeouts=RunTimeouts(start_s=2.0, end_s=10.0, retry_max_s=0.2))
    for step in range(5):
        recorder.log_metrics({schema.ENERGY_KWH: float(step)}, step=step, background=True)
    assert recorder.close()
    recorder.stop()
    history = client.get_metric_history(run_id, schema.ENERGY_KWH)
    assert sorted((m.step, m.value) for m in history) == [(s, float(s)) for s in range(5)]


def _metric_lines(spool_dir: Path) -> list[tuple[tuple[int, ...], bool]]:
    """(the steps of its energy totals, held) of each spooled metrics entry carrying the energy total, in order."""
    [path] = spool_paths(spool_dir)
    entries = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    return [(tuple(row[3] for row in e["metrics"] if row[0] == schema.ENERGY_KWH), bool(e.get("held"))) for e in entries
            if e["op"] == "metrics" and any(row[0] == schema.ENERGY_KWH for row in e["metrics"])]


def test_an_epoch_is_held_until_the_next_begins_and_spooled_once_when_the_next_began_before_its_accounting(
    spool_dir: Path, dead_uri: str
) -> None:
    """An epoch's values are held in the spool at its end (a training killed then keeps the step) and
    spooled to be sent when the next epoch begins. Usually the next epoch has begun by the time the
    epoch is accounted for (in the background, after the boundary): then they are spooled once, to be
    sent, without a hold written only to be released at once — the steps sent on one wake-up of the
    epochs' thread in one spool line."""
    import threading

    from mlflow_green.measure.tracker import EnergyTracker
    from mlflow_green.record.runs import RunHandle
    from mlflow_green.testing import FakeMeter
    from mlflow_green.training.session import TrainingSession

    session = TrainingSession(framework="keras", tracker=EnergyTracker(meters=[FakeMeter({"cpu:0": 50.0})]))
    session.bind_run(RunHandle(MlflowClient(dead_uri), "c" * 32, owned=True, timeouts=QUICK))
    session.begin_fit(planned_epochs=3)
    try:
        session.begin_epoch(0)
        session.end_epoch(0, logs={"accuracy": 0.5}, train_samples=10)
        session.settle()  # accounted for before the next epoch begins: held
        assert _metric_lines(spool_dir) == [((0,), True)]
        busy = threading.Event()
        session._deferred.submit(busy.wait)  # the epochs' thread is busy: epoch 1 is accounted for after epoch 2 began
        session.begin_epoch(1)
        session.end_epoch(1, logs={"accuracy": 0.6}, train_samples=10)
        session.begin_epoch(2)
        busy.set()
        session.settle()
        assert _metric_lines(spool_dir) == [((0,), True), ((0, 1), False)]  # step 1 once, to be sent, with step 0's
        [path] = spool_paths(spool_dir)
        held, sent = [json.loads(line) for line in path.read_text().splitlines()[1:] if '"green/energy_kwh"' in line]
        assert sent["releases"] == held["seq"]  # the hold of step 0 is superseded by the line sending it
        session.end_epoch(2, logs={"accuracy": 0.7}, train_samples=10)
        session.settle()
        assert _metric_lines(spool_dir)[-1] == ((2,), True)  # the last epoch is held until the fit's end
    finally:
        session.end_fit("FINISHED")


def test_gathered_steps_wait_for_the_next_write_and_are_spooled_by_the_exit_hook(spool_dir: Path, dead_uri: str) -> None:
    """Rows gathered by the epochs' thread are one line, before the next write of the run; if the interpreter exits
    first, its exit hook spools them (a writer with nothing queued yet but rows gathered is still sending)."""
    from mlflow_green.record import live_writers

    recorder = RunRecorder(None, "d" * 32, tracking_uri=dead_uri, timeouts=QUICK)
    try:
        recorder.log_metrics({schema.ENERGY_KWH: 1.0}, step=0, gather=True)
        recorder.log_metrics({schema.ENERGY_KWH: 2.0}, step=1, gather=True)
        assert not any(op == "metrics" for op, _ in _spooled_ops(spool_dir)) and recorder.sending()
        recorder.log_tags({schema.TAG_METERS: "cpu:estimate"})
        [path] = spool_paths(spool_dir)
        entries = [json.loads(line) for line in path.read_text().splitlines()[1:]]
        assert [(e["op"], [row[3] for row in e.get("metrics", [])]) for e in entries] == [("metrics", [0, 1]), ("tags", [])]
        recorder.log_metrics({schema.ENERGY_KWH: 3.0}, step=2, gather=True)
        live_writers._send_gathered_at_exit()
        entries = [json.loads(line) for line in path.read_text().splitlines()[1:]]
        assert [row[3] for row in entries[-1]["metrics"]] == [2]
    finally:
        recorder.close()
        recorder.stop()
