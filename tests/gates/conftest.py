"""Registered model versions in the session's real sqlite store, with green metrics and tags on their runs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException

MakeVersion = Callable[..., str]


def new_version(
    client: MlflowClient,
    experiment_id: str,
    model: str,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    *,
    with_run: bool = True,
) -> str:
    """Log a finished run with ``metrics`` (step 0) and ``tags``, register it as a new version of ``model``."""
    try:
        client.get_registered_model(model)
    except MlflowException:
        client.create_registered_model(model)
    if not with_run:
        return str(client.create_model_version(model, source="/models/elsewhere").version)
    run_id = client.create_run(experiment_id).info.run_id
    now_ms = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), now_ms, 0) for key, value in (metrics or {}).items()],
        tags=[RunTag(key, value) for key, value in (tags or {}).items()],
    )
    client.set_terminated(run_id)
    return str(client.create_model_version(model, source=f"runs:/{run_id}/model", run_id=run_id).version)


@pytest.fixture()
def client(mlflow_experiment: str, tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri)


@pytest.fixture()
def model_name() -> str:
    """A registered-model name no other test uses (the store is shared by the session)."""
    return f"gated-{uuid.uuid4().hex[:10]}"


@pytest.fixture()
def make_version(client: MlflowClient, mlflow_experiment: str, model_name: str) -> MakeVersion:
    """``make_version(metrics, tags, with_run=True) -> version`` of this test's model."""

    def make(metrics: Mapping[str, float] | None = None, tags: Mapping[str, str] | None = None, **kwargs: bool) -> str:
        return new_version(client, mlflow_experiment, model_name, metrics, tags, **kwargs)

    return make
