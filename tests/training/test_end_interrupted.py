"""A signal while a fit's end logs its figures: the totals, tags, report and the run's end are written first.

A ddp_spawn rank terminated with its whole process group gets SIGTERM, and, as its launcher dies of it, SIGINT
(torch's parent-death signal) — often while its exit is ending the fit's run ``KILLED``. A ``KeyboardInterrupt``
there left the run ``KILLED`` without ``green/report.json``. The end holds SIGINT as it holds SIGTERM, and the
interrupt is raised once the run is complete. (Where the end may wait in a collective — a distributed fit that
finished — neither is held: a signal must still be able to end it.)
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from mlflow_green import EnergyTracker
from mlflow_green.record import schema
from mlflow_green.testing import FakeMeter
from mlflow_green.training.distributed import DistributedContext
from mlflow_green.training.session import TrainingSession


class InterruptedAsItStops(FakeMeter):
    """A meter during whose close (the fit's end stopping the meters) the process receives ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__({"cpu:0": 10.0, "ram:0": 1.0})
        self.signum = signum

    def close(self) -> None:
        super().close()
        os.kill(os.getpid(), self.signum)


@pytest.fixture()
def python_handlers() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt (Python's own) and SIGTERM raises SystemExit (as Lightning's SIGTERMException
    is raised from its handler), restored after the test."""
    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(143)

    before = signal.signal(signal.SIGINT, signal.default_int_handler), signal.signal(signal.SIGTERM, terminated)
    yield
    signal.signal(signal.SIGINT, before[0])
    signal.signal(signal.SIGTERM, before[1])


@pytest.mark.usefixtures("python_handlers")
@pytest.mark.parametrize(("signum", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, SystemExit)])
@pytest.mark.parametrize(("status", "world_size"), [("KILLED", 2), ("KILLED", 1), ("FINISHED", 1)])
def test_a_signal_as_the_fit_ends_is_raised_after_the_run_is_complete(mlflow_experiment: str, tmp_path: Path, signum: int,
                                                                     raised: type[BaseException], status: str, world_size: int) -> None:
    session = TrainingSession(framework="test", tracker=EnergyTracker(meters=[InterruptedAsItStops(signum)]))
    if world_size > 1:  # rank zero of a distributed fit that failed: no collective at its end
        session.dist = DistributedContext(world_size=world_size, all_gather=lambda payload: [payload] * world_size)
    session.bind_run()  # the callback's own run
    session.begin_fit(planned_epochs=3)
    session.begin_epoch(0)
    session.end_epoch(0, train_samples=10)
    with pytest.raises(raised):
        session.end_fit(status)
    client = MlflowClient()
    run = client.get_run(session.run_id)
    assert run.info.status == status and mlflow.active_run() is None
    assert run.data.metrics[schema.ENERGY_KWH] > 0 and schema.TAG_METERS in run.data.tags
    report = json.loads(Path(client.download_artifacts(run.info.run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert report["status"] == status
