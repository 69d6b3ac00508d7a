"""MLflow's system metrics for a run mlflow-green starts: ``mlflow.start_run`` starts MLflow's monitor when system
metrics logging is on; a run of ours, created through the client, had none (no ``system/*`` metrics, silently)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import mlflow
import pytest
from mlflow import MlflowClient

import mlflow_green
from mlflow_green.record.system_metrics import start_monitor, stop_monitor
from mlflow_green.testing import FakeMeter
from mlflow_green.testing.server import free_port


@pytest.fixture()
def system_metrics_on() -> Iterator[None]:
    mlflow.enable_system_metrics_logging()
    mlflow.set_system_metrics_sampling_interval(0.1)  # MLflow writes none before a whole interval (10 s by default)
    try:
        yield
    finally:
        mlflow.disable_system_metrics_logging()
        mlflow.set_system_metrics_sampling_interval(None)


def _monitors() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor" and t.is_alive()]


def _system_keys(run_id: str) -> list[str]:
    return sorted(key for key in MlflowClient().get_run(run_id).data.metrics if key.startswith("system/"))


def test_a_run_of_ours_gets_mlflows_system_metrics_when_they_are_on(mlflow_experiment: str, system_metrics_on: None) -> None:
    with mlflow_green.track(meters=[FakeMeter({"cpu:0": 50.0})]) as tracked:
        time.sleep(0.5)
        assert _monitors(), "no system metrics monitor while the run is measured"
    run = MlflowClient().get_run(tracked.run_id)
    assert run.info.status == "FINISHED"
    assert "system/cpu_utilization_percentage" in _system_keys(tracked.run_id)
    assert not _monitors(), "the monitor outlived its run"


def test_none_when_they_are_off(mlflow_experiment: str) -> None:
    with mlflow_green.track(meters=[FakeMeter({"cpu:0": 50.0})]) as tracked:
        assert not _monitors()
    assert _system_keys(tracked.run_id) == []


def test_stopping_waits_a_bounded_time_for_a_server_that_is_down(system_metrics_on: None) -> None:
    """MLflow retries its last write for minutes against a server that is gone: the run's end waits at most its
    end timeout, then leaves the rest to the monitor's daemon thread."""
    monitor = start_monitor("0" * 32, f"http://127.0.0.1:{free_port()}")
    assert monitor is not None
    begun_s = time.monotonic()
    stop_monitor(monitor, timeout_s=1.0)
    assert time.monotonic() - begun_s < 3.0
