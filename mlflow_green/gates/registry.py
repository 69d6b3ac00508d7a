"""The gates' MLflow boundary: reads a version, its source run and the current alias holder; writes tags.

Two implementations of one small interface: :class:`ClientRegistry` over an ``MlflowClient``
(the Python API and the CLI) and :class:`StoreRegistry` over the server's own tracking and
registry stores (server-side enforcement, no HTTP round trip).

Example::

    from mlflow import MlflowClient
    registry = ClientRegistry(MlflowClient())
    evidence = gather_evidence(registry, "digits", "3", target_alias="champion", with_incumbent=True)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from mlflow_green.gates.rules import Evidence, Incumbent
from mlflow_green.record import schema

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion


class Registry(Protocol):
    """What a gate check reads and writes."""

    def model_version(self, name: str, version: str) -> ModelVersion:
        """The model version (raises MLflow's ``RESOURCE_DOES_NOT_EXIST`` if missing)."""

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points to, None if the alias is not set."""

    def run(self, run_id: str) -> Run:
        """A run, with its latest metrics and tags."""

    def latest_in_stage(self, name: str, stage: str) -> ModelVersion | None:
        """The newest version in ``stage``, None if none."""

    def set_version_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        """Set model-version tags."""


class ClientRegistry:
    """:class:`Registry` over an ``MlflowClient`` (any tracking server or local store).

    Example::

        registry = ClientRegistry(MlflowClient("http://127.0.0.1:5000"))
    """

    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    def model_version(self, name: str, version: str) -> ModelVersion:
        return self.client.get_model_version(name, version)

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        try:
            return self.client.get_model_version_by_alias(name, alias)
        except Exception as exc:
            if _is_missing(exc) or _is_invalid(exc):
                return None
            raise

    def run(self, run_id: str) -> Run:
        return self.client.get_run(run_id)

    def latest_in_stage(self, name: str, stage: str) -> ModelVersion | None:
        with warnings.catch_warnings():  # stages are deprecated in MLflow, still supported
            warnings.simplefilter("ignore", FutureWarning)
            versions = self.client.get_latest_versions(name, stages=[stage])
        return versions[0] if versions else None

    def set_version_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)


class StoreRegistry:
    """:class:`Registry` over a tracking store and a model-registry store (inside the server).

    Example::

        from mlflow.server import handlers
        registry = StoreRegistry(handlers._get_tracking_store(), handlers._get_model_registry_store())
    """

    def __init__(self, tracking_store: Any, registry_store: Any) -> None:
        self.tracking_store = tracking_store
        self.registry_store = registry_store

    def model_version(self, name: str, version: str) -> ModelVersion:
        return self.registry_store.get_model_version(name, version)

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        try:
            return self.registry_store.get_model_version_by_alias(name, alias)
        except Exception as exc:
            if _is_missing(exc) or _is_invalid(exc):
                return None
            raise

    def run(self, run_id: str) -> Run:
        return self.tracking_store.get_run(run_id)

    def latest_in_stage(self, name: str, stage: str) -> ModelVersion | None:
        versions = self.registry_store.get_latest_versions(name, stages=[stage])
        return versions[0] if versions else None

    def set_version_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities.model_registry import ModelVersionTag

        for key, value in tags.items():
            self.registry_store.set_model_version_tag(name, version, ModelVersionTag(key, value))


def _is_missing(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.get_http_status_code() == 404


def _is_invalid(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.get_http_status_code() == 400


def _run_facts(registry: Registry, run_id: str | None, source: str | None) -> tuple[dict[str, float], dict[str, str], str | None]:
    if not run_id:
        where = f" (registered from {source})" if source else ""
        return {}, {}, f"the version has no source run{where}; nothing was measured"
    try:
        run = registry.run(run_id)
    except Exception as exc:
        if _is_missing(exc):
            return {}, {}, f"source run {run_id} not found"
        raise
    return dict(run.data.metrics), dict(run.data.tags), None


def gather_evidence(
    registry: Registry,
    name: str,
    version: str,
    *,
    target_alias: str | None = None,
    target_stage: str | None = None,
    with_incumbent: bool = False,
) -> Evidence:
    """Everything the rules need about ``name`` version ``version``.

    Args:
        registry: Where to read.
        name: Registered model name.
        version: Version to check.
        target_alias: The alias the version is checked for (for ``beat_current_by_percent``).
        target_stage: The canonical stage the version is checked for.
        with_incumbent: Also read the version that holds the alias or stage now (one or two
            extra reads; only when the policy has ``beat_current_by_percent``).

    Raises:
        mlflow.exceptions.MlflowException: The model or version does not exist, or the store failed.
    """
    model_version = registry.model_version(name, version)
    metrics, tags, missing = _run_facts(registry, model_version.run_id, model_version.source)
    target = f"alias {target_alias}" if target_alias is not None else f"stage {target_stage}" if target_stage else None
    incumbent = None
    if with_incumbent and target is not None:
        holder: ModelVersion | None = None
        if target_alias is not None:
            holder = registry.version_by_alias(name, target_alias)
        elif target_stage is not None:
            holder = registry.latest_in_stage(name, target_stage)
        if holder is not None:
            held_metrics, _, _ = _run_facts(registry, holder.run_id, holder.source)
            incumbent = Incumbent(str(holder.version), held_metrics.get(schema.ACCURACY_PER_KWH))
    return Evidence(
        run_id=model_version.run_id or None,
        metrics=metrics,
        tags=tags,
        missing_run=missing,
        target=target,
        incumbent=incumbent,
        version=str(model_version.version),
        version_tags=dict(model_version.tags or {}),
    )
