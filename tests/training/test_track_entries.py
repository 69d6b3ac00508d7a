"""How a ``track()`` object is entered: ``@track()`` on coroutine and generator functions (a coroutine's calls are
measured until they return; a generator function is refused at decoration: only its creation was measured), and the
same object entered again while it runs — nested, or from another thread. Real sqlite store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from mlflow import MlflowClient

import mlflow_green
from mlflow_green.errors import ConfigError
from mlflow_green.record import schema
from mlflow_green.testing import FakeMeter

FIFTY_W = {"cpu:0": 45.0, "ram:0": 5.0}
"""50 W in all: with a RAM device of its own, the meter gets no RAM estimate added (20 W × this process's share of
the RAM, which grows with the frameworks a suite's worker has loaded: 1 % to 5 % more energy)."""


def test_a_decorated_coroutine_function_is_measured_until_its_call_returns(mlflow_experiment: str) -> None:
    @mlflow_green.track(meters=[FakeMeter(FIFTY_W)])
    async def evaluate(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    start_s = time.monotonic()
    assert asyncio.run(evaluate(0.6)) == "done"
    wall_s = time.monotonic() - start_s
    [run] = MlflowClient().search_runs([mlflow_experiment])
    duration_s = run.data.metrics[schema.DURATION_S]
    assert run.info.status == "FINISHED" and 0.6 <= duration_s <= wall_s  # the awaited body, not the call's creation
    assert run.data.metrics[schema.ENERGY_KWH] == pytest.approx(50.0 * duration_s / 3.6e6, rel=0.01)
    assert evaluate.__name__ == "evaluate"


def test_a_failing_coroutine_ends_its_run_failed(mlflow_experiment: str) -> None:
    @mlflow_green.track(meters=[FakeMeter(FIFTY_W)])
    async def broken() -> None:
        await asyncio.sleep(0.1)
        raise RuntimeError("bad batch")

    with pytest.raises(RuntimeError, match="bad batch"):
        asyncio.run(broken())
    [run] = MlflowClient().search_runs([mlflow_experiment])
    assert run.info.status == "FAILED" and run.data.metrics[schema.DURATION_S] >= 0.1


def test_a_generator_function_is_refused_at_decoration_with_what_to_do(mlflow_experiment: str) -> None:
    def batches() -> Iterator[int]:
        yield 1

    async def stream() -> AsyncIterator[int]:
        yield 1

    for func in (batches, stream):
        with pytest.raises(ConfigError, match=r"cannot decorate the generator function .*`with track\(\):`"):
            mlflow_green.track()(func)
    assert MlflowClient().search_runs([mlflow_experiment]) == []  # nothing measured, no run


def test_the_same_object_entered_again_while_it_runs_measures_the_inner_block_in_a_child_run(mlflow_experiment: str) -> None:
    """Nested ``with t: ... with t:`` left the outer run RUNNING, active and without figures (its run was replaced)."""
    import mlflow

    t = mlflow_green.track(meters=[FakeMeter(FIFTY_W)])
    with t:
        time.sleep(0.2)
        with t as inner:
            time.sleep(0.2)
        assert inner is not t and inner.run_id != t.run_id
    assert mlflow.active_run() is None
    client = MlflowClient()
    outer_run, inner_run = client.get_run(t.run_id), client.get_run(inner.run_id)
    assert outer_run.info.status == inner_run.info.status == "FINISHED"
    assert inner_run.data.tags["mlflow.parentRunId"] == t.run_id
    assert outer_run.data.metrics[schema.DURATION_S] >= 0.4 > inner_run.data.metrics[schema.DURATION_S] >= 0.2


def test_the_same_object_entered_from_two_threads_at_once_gives_each_a_run(mlflow_experiment: str) -> None:
    """It raised TrackerStateError into one thread's block now and then, and left a run RUNNING without figures."""
    import threading

    t = mlflow_green.track(meters=[FakeMeter(FIFTY_W)])
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def block(seconds: float) -> None:
        try:
            barrier.wait()
            with t:
                time.sleep(seconds)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=block, args=(s,)) for s in (0.6, 0.3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    runs = MlflowClient().search_runs([mlflow_experiment])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" and schema.ENERGY_KWH in r.data.metrics for r in runs)
