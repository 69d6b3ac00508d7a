"""``@track()`` on coroutine and generator functions: a coroutine's calls are measured until they return; a generator
function is refused at decoration (its body runs as it is iterated: only its creation was measured). Real sqlite store."""

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


def test_a_decorated_coroutine_function_is_measured_until_its_call_returns(mlflow_experiment: str) -> None:
    @mlflow_green.track(meters=[FakeMeter({"cpu:0": 50.0})])
    async def evaluate(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    start_s = time.monotonic()
    assert asyncio.run(evaluate(0.6)) == "done"
    wall_s = time.monotonic() - start_s
    [run] = MlflowClient().search_runs([mlflow_experiment])
    duration_s = run.data.metrics[schema.DURATION_S]
    assert run.info.status == "FINISHED" and 0.6 <= duration_s <= wall_s  # the awaited body, not the call's creation
    assert run.data.metrics[schema.ENERGY_KWH] == pytest.approx(50.0 * duration_s / 3.6e6, rel=0.02)
    assert evaluate.__name__ == "evaluate"


def test_a_failing_coroutine_ends_its_run_failed(mlflow_experiment: str) -> None:
    @mlflow_green.track(meters=[FakeMeter({"cpu:0": 50.0})])
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
