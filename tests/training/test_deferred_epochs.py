"""An epoch's accounting is handed to a background thread: same figures, same order, never lost."""

from __future__ import annotations

import copy
import faulthandler
import logging
import multiprocessing
import os
import pickle
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from mlflow_green import EnergyTracker
from mlflow_green.record import schema
from mlflow_green.testing import FakeMeter
from mlflow_green.training.budget import EnergyBudget
from mlflow_green.training.deferred import COALESCE_S, DeferredWork
from mlflow_green.training.session import TrainingSession


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


# -- the queue ---------------------------------------------------------------------------------------
def test_jobs_run_in_the_order_handed_over_whether_the_thread_or_a_settle_does_them() -> None:
    work = DeferredWork(name="test-order")
    done: list[int] = []

    def job(i: int) -> None:
        if i % 50 == 0:
            time.sleep(0.01)  # the thread is inside a job while the settle below comes
        done.append(i)

    for i in range(300):
        work.submit(lambda i=i: job(i))
        if i % 97 == 0:
            work.settle()
            assert done == list(range(i + 1))  # a settle returns with every job handed over so far done
    work.settle()
    assert done == list(range(300))
    work.close()


def test_every_job_is_done_by_the_thread_without_a_settle_however_the_hand_overs_fall() -> None:
    """A hand-over skips the wake-up while one is waiting to be taken: no job may be left behind by it
    (jobs handed over in bursts, while the thread is inside a job, just after it woke, while idle)."""
    work = DeferredWork(name="test-wakeups")
    done: list[tuple[int, str]] = []
    worker_names: set[str] = set()

    def job(i: int) -> None:
        if i % 7 == 0:
            time.sleep(0.002)  # the thread is inside a job while more come
        done.append((i, threading.current_thread().name))

    for burst in range(60):
        for i in range(burst % 5 + 1):
            work.submit(lambda n=burst * 10 + i: job(n))
        if burst % 3 == 0:
            time.sleep(0.001 * (burst % 4))  # sometimes idle, sometimes not
        else:
            for _ in range(burst % 50):  # held on this thread, as a training step holds the GIL
                pass
    deadline = time.monotonic() + 10
    while work.pending and time.monotonic() < deadline:
        time.sleep(0.005)
    expected = [burst * 10 + i for burst in range(60) for i in range(burst % 5 + 1)]
    deadline = time.monotonic() + 10
    while len(done) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.005)
    worker_names.update(name for _, name in done)
    assert [i for i, _ in done] == expected  # all done, in order, and no settle was called
    assert worker_names == {"test-wakeups"}
    work.close()


def test_a_settle_from_inside_a_job_does_not_run_later_jobs_ahead_of_it() -> None:
    work = DeferredWork(name="test-reentrant")
    done: list[str] = []
    work.submit(lambda: (work.settle(), done.append("first")))
    work.submit(lambda: done.append("second"))
    work.settle()
    assert done == ["first", "second"]
    work.close()


def test_jobs_handed_over_soon_after_the_threads_last_work_wait_and_are_done_together() -> None:
    """Short epochs are accounted a few at a time: a job handed over within COALESCE_S of the thread's
    last work waits for the spacing to be up, and the jobs that came meanwhile ride on the same wake-up;
    a settle does the waiting jobs at once."""
    work = DeferredWork(name="test-coalesce")
    done_at: dict[str, float] = {}

    def job(name: str) -> Callable[[], None]:
        return lambda: done_at.setdefault(name, time.monotonic())

    def wait_for(*names: str) -> None:
        deadline = time.monotonic() + 10
        while not set(names) <= set(done_at) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert set(names) <= set(done_at), done_at

    work.submit(job("epoch 0"))
    wait_for("epoch 0")
    first_s = done_at["epoch 0"]
    work.submit(job("epoch 1"))  # an epoch of 50 ms: within the spacing
    time.sleep(0.05)
    work.submit(job("epoch 2"))
    time.sleep(0.05)
    work.submit(job("epoch 3"))
    wait_for("epoch 1", "epoch 2", "epoch 3")
    assert done_at["epoch 1"] - first_s >= COALESCE_S - 0.05  # waited for the spacing
    assert done_at["epoch 3"] - done_at["epoch 1"] < 0.05  # one wake-up did the three
    work.submit(job("epoch 4"))  # within the spacing again: a settle (the fit's end) does it now
    started_s = time.monotonic()
    work.settle()
    assert "epoch 4" in done_at and done_at["epoch 4"] - started_s < 0.05
    work.close()


def test_a_failing_job_is_logged_and_the_next_one_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    work = DeferredWork(name="test-failing")
    done: list[str] = []
    with caplog.at_level(logging.WARNING, logger="mlflow_green"):
        work.submit(lambda: 1 / 0)
        work.submit(lambda: done.append("next"))
        work.settle()
    assert done == ["next"]
    assert "could not account for an epoch: ZeroDivisionError" in caplog.text
    work.close()


def test_close_ends_the_thread_and_a_later_job_starts_another() -> None:
    work = DeferredWork(name="test-close")
    work.start()
    assert len(_threads("test-close")) == 1
    work.close()
    deadline = time.monotonic() + 5
    while _threads("test-close") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _threads("test-close")
    ran = threading.Event()
    work.submit(ran.set)
    assert ran.wait(5)  # done by a new thread, with nobody settling
    work.close()


def test_a_copy_is_a_new_empty_queue() -> None:
    work = DeferredWork(name="test-copy")
    work.submit(lambda: None)
    copied = pickle.loads(pickle.dumps(work))
    assert copied.pending == 0 and copied.name == "test-copy"
    work.close()


def _settle_in_child(work: DeferredWork, answer: multiprocessing.Queue, stacks: str) -> None:
    # stuck (twice, in a full suite's worker, where torch, TensorFlow and JAX run threads): where, for the failure.
    # Not faulthandler.dump_traceback_later: it first cancels the parent's watchdog, whose thread is not in a forked
    # child, and waits for it forever (pytest's faulthandler_timeout arms one in every test)
    def dump_and_exit() -> None:
        with open(stacks, "w") as out:
            faulthandler.dump_traceback(out, all_threads=True)
        os._exit(3)

    watchdog = threading.Timer(20, dump_and_exit)
    watchdog.daemon = True
    watchdog.start()
    done: list[str] = []
    work.submit(lambda: done.append("child"))
    work.settle()
    answer.put(done)


def test_a_forked_child_settles_with_its_own_locks(tmp_path: Path) -> None:
    work = DeferredWork(name="test-fork")
    release = threading.Event()
    work.submit(release.wait)  # the parent's thread holds the running lock across the fork
    time.sleep(0.05)
    context = multiprocessing.get_context("fork")
    answer, stacks = context.Queue(), tmp_path / "child_stacks.txt"
    child = context.Process(target=_settle_in_child, args=(work, answer, str(stacks)))
    child.start()
    try:
        try:
            settled = answer.get(timeout=30)
        except queue.Empty:
            child.join(5)
            pytest.fail("the forked child did not settle; its threads after 20 s:\n"
                        + (stacks.read_text() if stacks.exists() else "(no dump)"))
        assert settled == ["child"]
    finally:
        release.set()
        child.join(30)
    assert child.exitcode == 0
    work.close()


# -- a session's epochs ------------------------------------------------------------------------------
def _session(now: list[float], *, budget: EnergyBudget | None = None) -> TrainingSession:
    meter = FakeMeter({"cpu:0": 10.0, "ram:0": 2.0})
    return TrainingSession(framework="test", tracker=EnergyTracker(meters=[meter], clock=lambda: now[0]), budget=budget)


def _fit(session: TrainingSession, now: list[float], epochs: int = 3) -> list[dict[str, float]]:
    """A scripted fit: 2 s of training and 0.5 s of validation per epoch; returns each epoch's live figures."""
    live = []
    session.bind_run()
    session.begin_fit(planned_epochs=epochs)
    for epoch in range(epochs):
        session.begin_epoch(epoch)
        now[0] += 2.0
        session.add_data_wait(0.4)
        session.begin_phase("validation")
        now[0] += 0.5
        session.end_phase("validation", samples=100, ends_epoch=True)
        result = session.end_epoch(epoch, logs={"val_accuracy": 0.5 + epoch / 10}, train_samples=400)
        live.append(result.live)
    session.end_fit("FINISHED")
    return live


def _history(run_id: str) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient()
    keys = [k for k in client.get_run(run_id).data.metrics if k.startswith(schema.METRIC_PREFIX)]
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in keys}


def test_epochs_accounted_in_the_background_log_what_an_epoch_accounted_at_once_logs(mlflow_experiment: str) -> None:
    figures = {}
    for name, budget in (("deferred", None), ("at once", EnergyBudget(max_energy_kwh=1e9))):  # a budget accounts at once
        now = [0.0]
        session = _session(now, budget=budget)
        with mlflow.start_run() as run:
            live = _fit(session, now)
        figures[name] = (_history(run.info.run_id), live, session.epochs)
    deferred, at_once = figures["deferred"], figures["at once"]
    assert deferred[0] == at_once[0] and deferred[2] == at_once[2]
    assert set(deferred[0]) >= {schema.ENERGY_KWH, schema.phase_energy_key("other"), schema.PROJECTED_ENERGY_KWH}
    assert [e["epoch"] for e in deferred[2]] == [0, 1, 2]
    for shown, logged in zip(deferred[1], at_once[1]):  # the progress bar's figures, worked out without the accounting
        assert shown == pytest.approx(logged, rel=1e-12)
    energy = dict(deferred[0][schema.ENERGY_KWH])
    assert [live[schema.ENERGY_KWH] for live in deferred[1][:2]] == pytest.approx([energy[0], energy[1]], rel=1e-12)


def test_an_epochs_figures_reach_mlflow_with_no_further_call_from_the_training_thread(mlflow_experiment: str) -> None:
    now = [0.0]
    earlier = set(_threads("mlflow-green-epochs"))  # other sessions' of this process, idle until they end on their own
    session = _session(now)
    with mlflow.start_run() as run:
        session.bind_run()
        session.begin_fit(planned_epochs=3)
        session.begin_epoch(0)
        now[0] += 2.0
        session.end_epoch(0, train_samples=400)
        session.begin_epoch(1)  # hands over "send step 0" after step 0's accounting; neither is done here
        client, deadline = MlflowClient(), time.monotonic() + 30
        while not client.get_metric_history(run.info.run_id, schema.ENERGY_KWH) and time.monotonic() < deadline:
            time.sleep(0.05)
        points = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, schema.ENERGY_KWH)]
        assert points == [(0, pytest.approx(12.0 * 2.0 / 3.6e6))]
        session.end_fit("FINISHED")
    assert set(_threads("mlflow-green-epochs")) <= earlier  # this session's ended with its fit


def test_a_checkpoint_and_a_copy_taken_right_after_an_epoch_hold_that_epoch(mlflow_experiment: str) -> None:
    now = [0.0]
    session = _session(now)
    with mlflow.start_run() as run:
        session.bind_run()
        session.begin_fit(planned_epochs=2)
        session.begin_epoch(0)
        now[0] += 2.0
        session.end_epoch(0, train_samples=400)
        state = session.state_dict()  # a checkpoint saved at the epoch's end, before the thread ran
        during = copy.deepcopy(session)  # a copy while it measures: its configuration only (its totals would go stale)
        assert state["phases"]["train"]["energy_j"] == pytest.approx(24.0)
        assert during.epochs == [] and during.run_id is None and during.carried.energy_j == 0 and during.last_step is None
        session.end_fit("FINISHED")
    after = copy.deepcopy(session)  # after the fit: the run's state (as Lightning copies a trainer's callbacks)
    assert [e["epoch"] for e in after.epochs] == [0] and after.ledger.totals()["train"].energy_j == pytest.approx(24.0)
    assert after.run_id == run.info.run_id and after.carried.energy_j == session.carried.energy_j


def test_what_the_jobs_gathered_is_handed_on_as_their_run_ends_and_every_so_many_jobs(caplog: pytest.LogCaptureFixture) -> None:
    """``after`` (the session's: spool the steps gathered) runs after each run of jobs, also one that a settle does,
    and at least every AFTER_EVERY_JOBS jobs within a long run; a failing ``after`` is logged, the jobs stand."""
    from mlflow_green.training.deferred import AFTER_EVERY_JOBS

    work, seen = DeferredWork(name="test-after"), []
    work.after = lambda: seen.append(len(done))
    done: list[int] = []
    for i in range(2 * AFTER_EVERY_JOBS + 5):
        work.submit(lambda i=i: done.append(i))
    work.settle()
    assert seen == [AFTER_EVERY_JOBS, 2 * AFTER_EVERY_JOBS, 2 * AFTER_EVERY_JOBS + 5]
    work.after = lambda: 1 / 0
    work.submit(lambda: done.append(-1))
    with caplog.at_level(logging.WARNING, logger="mlflow_green.training.deferred"):
        work.settle()
    assert done[-1] == -1 and "could not spool the epochs' metrics" in caplog.text
    work.close()
