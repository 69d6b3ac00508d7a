"""Fixtures for the spool and replay tests: an address where no tracking server answers, and a real store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlflow_green.testing.server import free_port


@pytest.fixture()
def dead_uri(monkeypatch: pytest.MonkeyPatch) -> str:
    """A tracking server address nothing listens on (MLflow's client is told to fail at once there)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture()
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The background writer pauses at most 0.2 s between tries, and waits 1 s at the end of a fit."""
    monkeypatch.setenv("MLFLOW_GREEN_RETRY_MAX_S", "0.2")
    monkeypatch.setenv("MLFLOW_GREEN_END_TIMEOUT_S", "1")


@pytest.fixture()
def store(tracking_uri: str, tmp_path: Path) -> Iterator[tuple[MlflowClient, str]]:
    """A real sqlite store and a fresh experiment in it: (client, experiment id)."""
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(f"spool-{time.time_ns()}", artifact_location=(tmp_path / "a").as_uri())
    yield client, experiment_id


@pytest.fixture()
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The spool folder of the test (also MLFLOW_GREEN_SPOOL_DIR), with a fallback folder of its own."""
    folder = tmp_path / "green-spool"
    monkeypatch.setenv("MLFLOW_GREEN_SPOOL_DIR", str(folder))
    monkeypatch.setenv("MLFLOW_GREEN_SPOOL_FALLBACK_DIR", str(tmp_path / "green-spool-fallback"))
    return folder
