"""Two fits measured at once in two threads of one process: each run holds both's energy, and a warning says so.

Two fits starting together (a ``threading.Barrier`` before two ``model.fit`` calls) both bound their runs before
either had begun its fit: each looked for a call in progress in the other thread as it bound its run, found none,
and neither warned; a fit during which a shorter one came and went in another thread was never told. Here the two
sessions' steps are ordered so, in two real threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from mlflow_green import EnergyTracker
from mlflow_green.testing import FakeMeter
from mlflow_green.training.session import TrainingSession

OVERLAP = "another training or evaluation is measured in another thread"


def _session() -> TrainingSession:
    return TrainingSession(framework="test", tracker=EnergyTracker(meters=[FakeMeter({"cpu:0": 10.0})]))


def _in_two_threads(steps: list[tuple[int, Callable[[], None]]]) -> None:
    """Run each step in its thread (0 or 1), one after the other in the order given."""
    queues: list[list[Callable[[], None]]] = [[], []]
    turn = threading.Condition()
    order = [thread for thread, _ in steps]
    done: list[int] = []
    for thread, step in steps:
        queues[thread].append(step)

    def worker(me: int) -> None:
        for step in queues[me]:
            with turn:
                assert turn.wait_for(lambda: order[len(done)] == me, timeout=60)
            step()
            with turn:
                done.append(me)
                turn.notify_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(done) == len(steps)


@pytest.mark.parametrize("order", ["bound together", "one after the other", "the other came and went", "one alone"])
def test_two_fits_overlapping_in_two_threads_are_warned_about_however_they_start(
        mlflow_experiment: str, order: str, caplog: pytest.LogCaptureFixture) -> None:
    first, second = _session(), _session()

    def begins(session: TrainingSession) -> Callable[[], None]:
        return lambda: (session.begin_fit(planned_epochs=2), session.begin_epoch(0))

    def epoch_ends(session: TrainingSession) -> Callable[[], None]:
        return lambda: (session.end_epoch(0, train_samples=10), session.settle())  # its accounting done

    bind = [(0, first.bind_run), (1, second.bind_run)]
    begin = [(0, begins(first)), (1, begins(second))]
    epoch = [(0, epoch_ends(first)), (1, epoch_ends(second))]
    end = [(0, lambda: first.end_fit("FINISHED")), (1, lambda: second.end_fit("FINISHED"))]
    steps = {"bound together": bind + begin + epoch + end,  # neither in its fit as the other bound its run
             "one after the other": [bind[0], begin[0], bind[1], begin[1]] + epoch + end,  # the first's began first
             "the other came and went": [bind[0], begin[0], bind[1], begin[1], epoch[1], end[1], epoch[0], end[0]],
             "one alone": [bind[0], begin[0], epoch[0], end[0], bind[1], begin[1], epoch[1], end[1]]}[order]
    with caplog.at_level(logging.WARNING, logger="mlflow_green"):
        _in_two_threads(steps)
    warned = [r.getMessage() for r in caplog.records if OVERLAP in r.getMessage()]
    assert len(warned) == (0 if order == "one alone" else 2), warned  # each fit's, once
    assert first.run_id != second.run_id


@pytest.mark.parametrize("order", ["evaluation first", "evaluation came and went", "fit came and went", "one after the other"])
def test_an_evaluation_and_a_fit_overlapping_in_two_threads_are_warned_about(
        mlflow_experiment: str, order: str, caplog: pytest.LogCaptureFixture) -> None:
    """A standalone evaluation (``model.evaluate``, ``trainer.validate``) binds its run only as it ends: a fit in another
    thread meanwhile saw no call in progress, and neither warned."""
    fit, evaluation = _session(), _session()
    fit_steps = [(0, fit.bind_run), (0, lambda: (fit.begin_fit(planned_epochs=2), fit.begin_epoch(0))),
                 (0, lambda: (fit.end_epoch(0, train_samples=10), fit.settle())), (0, lambda: fit.end_fit("FINISHED"))]
    begin_eval, end_eval = (1, lambda: evaluation.begin_eval("test")), (1, lambda: evaluation.end_eval("test", samples=5))
    steps = {"evaluation first": [begin_eval, *fit_steps[:3], end_eval, fit_steps[3]],
             "evaluation came and went": [*fit_steps[:2], begin_eval, end_eval, *fit_steps[2:]],
             "fit came and went": [begin_eval, *fit_steps, end_eval],
             "one after the other": [begin_eval, end_eval, *fit_steps]}[order]
    with caplog.at_level(logging.WARNING, logger="mlflow_green"):
        _in_two_threads(steps)
    warned = [r.getMessage() for r in caplog.records if OVERLAP in r.getMessage()]
    assert len(warned) == (0 if order == "one after the other" else 2), warned  # the fit's and the evaluation's, once
    assert fit.run_id != evaluation.run_id


def test_an_evaluation_whose_collective_failed_is_no_longer_in_progress(mlflow_experiment: str,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A distributed evaluation whose end's collective raised (a rank gone) stayed a call in progress: every later fit
    in another thread was warned about an overlap with it."""
    from mlflow_green.training.distributed import DistributedContext

    def gone(payload: object) -> list[object]:
        raise RuntimeError("a rank is gone")

    evaluation, fit = _session(), _session()
    evaluation.dist = DistributedContext(world_size=2, all_gather=gone)
    evaluation.begin_eval("test")
    with pytest.raises(RuntimeError, match="a rank is gone"):
        evaluation.end_eval("test", samples=5)
    worker = threading.Thread(target=lambda: (fit.bind_run(), fit.begin_fit(planned_epochs=1), fit.begin_epoch(0),
                                              fit.end_epoch(0, train_samples=10), fit.settle(), fit.end_fit("FINISHED")))
    with caplog.at_level(logging.WARNING, logger="mlflow_green"):
        worker.start()
        worker.join(120)
    assert not [r for r in caplog.records if OVERLAP in r.getMessage()]


class LetsAnotherThreadInAsItStops(FakeMeter):
    """A meter whose close — the fit's end stopping the meters, its figures not logged yet — lets another thread act,
    waiting for it at most 2 s (it may be made to wait for the end instead)."""

    def __init__(self) -> None:
        super().__init__({"cpu:0": 10.0})
        self.closing, self.acted = threading.Event(), threading.Event()

    def close(self) -> None:
        super().close()
        self.closing.set()
        self.acted.wait(2.0)


def test_a_profile_logged_from_another_thread_as_a_fit_ends_leaves_one_point_per_step(mlflow_experiment: str) -> None:
    """``log_model()`` from another thread while a fit's end logs its figures took the fit for ended and flushed: the
    last epoch's held values went out before the final totals replaced them — two points at the last step."""
    from mlflow import MlflowClient

    from mlflow_green.training.inspection import ModelProfile

    meter = LetsAnotherThreadInAsItStops()
    session = TrainingSession(framework="test", tracker=EnergyTracker(meters=[meter]))
    session.bind_run()
    session.begin_fit(planned_epochs=2)
    for epoch in (0, 1):
        session.begin_epoch(epoch)
        session.end_epoch(epoch, train_samples=10)
    profile = ModelProfile(framework="keras", params=10, params_unique=10, params_trainable=10, params_nonzero=10, sparsity=0.0,
                           structured_sparsity=0.0, weight_bits=32.0, size_bytes=40, compressed_size_bytes=40)

    def log_model() -> None:
        assert meter.closing.wait(60)
        session.log_profile(profile)
        meter.acted.set()

    other = threading.Thread(target=log_model)
    other.start()
    session.end_fit("FINISHED")
    other.join(60)
    client = MlflowClient()
    for key in client.get_run(session.run_id).data.metrics:
        steps = [m.step for m in client.get_metric_history(session.run_id, key)]
        assert len(steps) == len(set(steps)), (key, steps)
