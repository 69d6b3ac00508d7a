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
    before = len(_monitors())  # (another test's, still giving up on a server that is down)
    with mlflow_green.track(meters=[FakeMeter({"cpu:0": 50.0})]) as tracked:
        time.sleep(0.5)
        assert len(_monitors()) == before + 1, "no system metrics monitor while the run is measured"
    run = MlflowClient().get_run(tracked.run_id)
    assert run.info.status == "FINISHED"
    assert "system/cpu_utilization_percentage" in _system_keys(tracked.run_id)
    assert len(_monitors()) == before, "the monitor outlived its run"


def test_none_when_they_are_off(mlflow_experiment: str) -> None:
    before = len(_monitors())
    with mlflow_green.track(meters=[FakeMeter({"cpu:0": 50.0})]) as tracked:
        assert len(_monitors()) == before
    assert _system_keys(tracked.run_id) == []


def test_stopping_waits_a_bounded_time_for_a_server_that_is_down(system_metrics_on: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow retries its last write for minutes against a server that is gone: the run's end waits at most its
    end timeout, then leaves the rest to the monitor's daemon thread."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the monitor's thread gives up soon after the test
    monitor = start_monitor("0" * 32, f"http://127.0.0.1:{free_port()}")
    assert monitor is not None
    begun_s = time.monotonic()
    left_s = stop_monitor(monitor, None, end_s=30.0)
    assert time.monotonic() - begun_s < 3.0 and left_s is not None and left_s > 27.0  # the rest left for the run's writes
    failing = start_monitor("0" * 32, f"http://127.0.0.1:{free_port()}")
    begun_s = time.monotonic()
    stop_monitor(failing, 5.0, end_s=30.0, failing=True)  # the run's own writes fail already: no wait at all
    assert time.monotonic() - begun_s < 0.5
