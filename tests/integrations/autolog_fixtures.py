"""Shared by the autolog tests: autologging (ours and MLflow's) is switched off after each test."""

from __future__ import annotations

from collections.abc import Iterator

import mlflow
from mlflow import MlflowClient

import mlflow_green


def autolog_off() -> Iterator[None]:
    yield
    mlflow_green.autolog(disable=True)
    while mlflow.active_run() is not None:
        mlflow.end_run()


def runs_of(experiment_id: str) -> list:
    """Every run of the experiment, oldest first."""
    return sorted(MlflowClient().search_runs([experiment_id]), key=lambda r: r.info.start_time)


def steps(run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in MlflowClient().get_metric_history(run_id, key))
