"""Meter objects shared by measurements running at once — a block inside a block given the same meters, a decorated
function calling itself — each get their own energy: opening the meter again for the inner one rebased the outer
one's counters (its energy went down by the inner one's). Real sqlite store, a meter as users pass one."""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient

import mlflow_green
from mlflow_green.record import schema
from mlflow_green.testing import FakeMeter

FIFTY_W = {"cpu:0": 45.0, "ram:0": 5.0}
"""50 W in all: with a RAM device of its own, the meter gets no RAM estimate added (20 W × this process's share of
the RAM, which grows with the frameworks a suite's worker has loaded: 1 % to 5 % more energy)."""


def _energy_matches_50_w(run_id: str) -> float:
    metrics = MlflowClient().get_run(run_id).data.metrics
    assert metrics[schema.ENERGY_KWH] == pytest.approx(50.0 * metrics[schema.DURATION_S] / 3.6e6, rel=0.01)  # a rebased one was 33 % low or less
    return metrics[schema.DURATION_S]


def test_a_block_inside_a_block_with_the_same_meter_objects_keeps_each_ones_energy(mlflow_experiment: str) -> None:
    meter = FakeMeter(FIFTY_W)
    with mlflow_green.track(meters=[meter]) as outer:
        time.sleep(0.3)
        with mlflow_green.track(meters=[meter]) as inner:
            time.sleep(0.3)
        time.sleep(0.3)
    assert _energy_matches_50_w(outer.run_id) >= 0.9 > _energy_matches_50_w(inner.run_id) >= 0.3


def test_a_decorated_function_calling_itself_logs_each_calls_own_energy(mlflow_experiment: str) -> None:
    meter = FakeMeter(FIFTY_W)

    @mlflow_green.track(meters=[meter])
    def search(depth: int) -> None:
        time.sleep(0.2)
        if depth:
            search(depth - 1)

    search(2)
    runs = MlflowClient().search_runs([mlflow_experiment])
    durations = sorted(_energy_matches_50_w(run.info.run_id) for run in runs)
    assert len(durations) == 3 and durations[0] >= 0.2 and durations[2] >= 0.6
