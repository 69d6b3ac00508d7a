"""Registered model versions of an evaluated model, and their ``green.inference_run`` tag.

MLflow hands an evaluator the loaded model, not the URI it was loaded from. The model's
``MLmodel`` metadata names the run that logged it, its artifact path and (MLflow 3) its
``LoggedModel`` id; every registered version backed by that same model (same ``LoggedModel``, or
same run and artifact path) is the model evaluated, whether the URI was ``models:/name/1``,
``models:/name@champion`` or ``runs:/<run>/model``. Each gets ``green.inference_run`` = the
evaluation run, so ranking and gates find its inference figures without guessing.

Example::

    versions = versions_of(client, pyfunc_model)
    tag_versions(client, versions, run_id)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mlflow_green.record import schema

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)

_PAGE = 1000


def model_identity(model: Any, model_id: str | None = None) -> dict[str, str | None]:
    """``run_id``, ``artifact_path`` and ``model_id`` of a loaded MLflow model (None when unknown)."""
    meta = getattr(model, "metadata", None)
    return {
        "run_id": getattr(meta, "run_id", None) or None,
        "artifact_path": getattr(meta, "artifact_path", None) or None,
        "model_id": model_id or getattr(meta, "model_id", None) or getattr(model, "model_id", None) or None,
    }


def versions_of(client: MlflowClient, model: Any, *, model_id: str | None = None) -> list[ModelVersion]:
    """The registered versions backed by ``model`` (empty when it was not logged from a run)."""
    identity = model_identity(model, model_id)
    run_id = identity["run_id"]
    if not run_id:
        return []
    found: list[ModelVersion] = []
    token = None
    while True:
        page = client.search_model_versions(f"run_id = '{run_id}'", max_results=_PAGE, page_token=token)
        found.extend(v for v in page if _same_model(v, identity))
        token = getattr(page, "token", None)
        if not token:
            return found


def _same_model(version: Any, identity: dict[str, str | None]) -> bool:
    wanted_id, version_id = identity["model_id"], getattr(version, "model_id", None)
    source = (version.source or "").rstrip("/")
    if wanted_id and version_id:
        return bool(version_id == wanted_id)
    if wanted_id and source.startswith("models:/"):  # MLflow 3: registered from a LoggedModel
        return source == f"models:/{wanted_id}"
    path = (identity["artifact_path"] or "").rstrip("/")
    if not path:
        return True  # nothing tells the run's models apart: the run's version is this model
    relative = path.strip("/")
    return source in (f"runs:/{identity['run_id']}/{relative}", path) or source.endswith("/" + relative)


def tag_versions(client: MlflowClient, versions: list[ModelVersion], run_id: str) -> list[str]:
    """Set ``green.inference_run`` = ``run_id`` on each version; returns ``name/version`` of those tagged.

    A version that cannot be tagged (permissions, a server refusing) is skipped with a warning:
    the evaluation itself is already logged.
    """
    tagged = []
    for version in versions:
        try:
            client.set_model_version_tag(version.name, str(version.version), schema.TAG_INFERENCE_RUN, run_id)
        except Exception as exc:
            logger.warning(
                "mlflow-green: could not tag %s version %s with %s=%s: %s",
                version.name, version.version, schema.TAG_INFERENCE_RUN, run_id, exc,
            )
            continue
        tagged.append(f"{version.name}/{version.version}")
    return tagged
