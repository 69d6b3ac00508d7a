"""Reading a run's artifacts inside the tracking server (for verifying signed measurements).

Example::

    data = read_run_artifact(tracking_store.get_run(run_id), "green/signed_manifest.json")
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.entities import Run


def read_run_artifact(run: Run, path: str) -> bytes | None:
    """One artifact of ``run``, read where the server itself keeps it (``--artifacts-destination``
    for proxied ``mlflow-artifacts:`` roots, else the run's own artifact location); None if absent."""
    import tempfile

    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    uri = run.info.artifact_uri
    repo, repo_path = None, path
    try:
        from mlflow.server import handlers

        if handlers._is_servable_proxied_run_artifact_root(uri):
            repo = handlers._get_artifact_repo_mlflow_artifacts()
            repo_path = handlers._get_proxied_run_artifact_destination_path(proxied_artifact_root=uri, relative_path=path)
            repo_path = handlers._get_workspace_scoped_repo_path_if_enabled(repo_path)
    except (ImportError, AttributeError, KeyError):  # not inside a server, or MLflow internals changed
        repo = None
    if repo is None:
        repo, repo_path = get_artifact_repository(uri), path
    folder = posixpath.dirname(repo_path) or None
    try:
        if posixpath.basename(repo_path) not in {posixpath.basename(f.path) for f in repo.list_artifacts(folder)}:
            return None
        local = repo.get_local_path(repo_path) if hasattr(repo, "get_local_path") else None
        if local is not None:  # a local artifact store: read it in place
            with open(local, "rb") as f:
                return f.read()
        with tempfile.TemporaryDirectory(prefix="mlflow-green-") as tmp:
            with open(repo.download_artifacts(repo_path, tmp), "rb") as f:
                return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
