"""Registered model versions in the session's real sqlite store, with green metrics and tags on their runs."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

import pytest
from mlflow import MlflowClient

from mlflow_green.testing.registry import register_version

MakeVersion = Callable[..., str]


new_version = register_version


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
