"""The two :class:`Registry` implementations: over an ``MlflowClient``, and over the server's own stores.

:class:`ClientRegistry` serves the Python API and the CLI; :class:`StoreRegistry` serves
server-side enforcement (no HTTP round trip). What a gate reads through them is gathered by
:func:`mlflow_green.gates.registry.gather_evidence`.

Example::

    from mlflow import MlflowClient
    registry = ClientRegistry(MlflowClient())
    registry.version_by_alias("digits", "champion")   # None when the alias is not set
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from mlflow_green.gates.artifacts import read_run_artifact

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel

logger = logging.getLogger(__name__)


class Registry(Protocol):
    """What a gate check reads and writes."""

    def model_version(self, name: str, version: str) -> ModelVersion:
        """The model version (raises MLflow's ``RESOURCE_DOES_NOT_EXIST`` if missing)."""

    def registered_model(self, name: str) -> RegisteredModel:
        """The registered model (its tags: the prompt flag, the remembered holders)."""

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points to, None if the alias is not set."""

    def run(self, run_id: str) -> Run:
        """A run, with its latest metrics and tags."""

    def read_artifact(self, run: Run, path: str) -> bytes | None:
        """One artifact of a run; None when it has none at ``path``."""

    def latest_in_stage(self, name: str, stage: str) -> ModelVersion | None:
        """The newest version in ``stage``, None if none."""

    def set_version_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        """Set model-version tags."""

    def set_model_tags(self, name: str, tags: Mapping[str, str]) -> None:
        """Set registered-model tags."""


class ClientRegistry:
    """:class:`Registry` over an ``MlflowClient`` (any tracking server or local store).

    Example::

        registry = ClientRegistry(MlflowClient("http://127.0.0.1:5000"))
    """

    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    def model_version(self, name: str, version: str) -> ModelVersion:
        return self.client.get_model_version(name, version)

    def registered_model(self, name: str) -> RegisteredModel:
        return self.client.get_registered_model(name)

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        return _unless_unset(lambda: self.client.get_model_version_by_alias(name, alias))

    def run(self, run_id: str) -> Run:
        return self.client.get_run(run_id)

    def read_artifact(self, run: Run, path: str) -> bytes | None:
        from mlflow_green.record.run_signature import read_artifact

        return read_artifact(self.client, run.info.run_id, path)

    def latest_in_stage(self, name: str, stage: str) -> ModelVersion | None:
        with warnings.catch_warnings():  # stages are deprecated in MLflow, still supported
            warnings.simplefilter("ignore", FutureWarning)
            versions = self.client.get_latest_versions(name, stages=[stage])
        return versions[0] if versions else None

    def set_version_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            if not self._write(lambda k=key, v=value: self.client.set_model_version_tag(name, version, k, v)):
                return

    def set_model_tags(self, name: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            if not self._write(lambda k=key, v=value: self.client.set_registered_model_tag(name, k, v)):
                return

    @staticmethod
    def _write(write: Callable[[], None]) -> bool:
        """Write a gate tag; False when a green server refuses it (its own gate writes these tags)."""
        try:
            write()
        except Exception as exc:
            if _is_refused_by_green_server(exc):
                logger.info("mlflow-green: the tracking server writes its own gate tags (%s)", exc)
                return False
            raise
        return True


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

    def registered_model(self, name: str) -> RegisteredModel:
        return self.registry_store.get_registered_model(name)

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        return _unless_unset(lambda: self.registry_store.get_model_version_by_alias(name, alias))

    def run(self, run_id: str) -> Run:
        return self.tracking_store.get_run(run_id)

    def read_artifact(self, run: Run, path: str) -> bytes | None:
        return read_run_artifact(run, path)

    def latest_in_stage(self, name: str, stage: str) -> ModelVersion | None:
        versions = self.registry_store.get_latest_versions(name, stages=[stage])
        return versions[0] if versions else None

    def set_version_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities.model_registry import ModelVersionTag

        for key, value in tags.items():
            self.registry_store.set_model_version_tag(name, version, ModelVersionTag(key, value))

    def set_model_tags(self, name: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities.model_registry import RegisteredModelTag

        for key, value in tags.items():
            self.registry_store.set_registered_model_tag(name, RegisteredModelTag(key, value))


def _unless_unset(lookup: Callable[[], ModelVersion]) -> ModelVersion | None:
    """The version an alias points to; None when the alias is not set (MLflow answers 404 or 400)."""
    try:
        return lookup()
    except Exception as exc:
        if is_missing(exc) or is_invalid(exc):
            return None
        raise


def is_missing(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.get_http_status_code() == 404


def _is_refused_by_green_server(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code == "PERMISSION_DENIED" and "mlflow-green" in exc.message


def is_invalid(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.get_http_status_code() == 400
