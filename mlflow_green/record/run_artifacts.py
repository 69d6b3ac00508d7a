"""Reading a run's small artifacts through an ``MlflowClient`` (the signed manifest, the reports).

Example::

    read_artifact(MlflowClient(), run_id, "green/report.json")      # bytes, or None when absent
    read_artifacts(MlflowClient(), run_id, ("green/report.json", "green/inference_report.json"))
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
_PROGRESS_LOCK = threading.Lock()


@contextlib.contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow draws a progress bar for every download; not for our small reads (nor into a CLI's output)."""
    with _PROGRESS_LOCK:
        before = os.environ.get(_PROGRESS_BAR)
        os.environ[_PROGRESS_BAR] = "false"
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(_PROGRESS_BAR, None)
            else:
                os.environ[_PROGRESS_BAR] = before


def read_artifact(client: MlflowClient, run_id: str, path: str) -> bytes | None:
    """One artifact of a run through the client; None when the run has none at ``path``."""
    folder = posixpath.dirname(path) or None
    if path not in {f.path for f in client.list_artifacts(run_id, folder)}:
        return None
    with tempfile.TemporaryDirectory(prefix="mlflow-green-") as tmp, _no_progress_bar():
        with open(client.download_artifacts(run_id, path, tmp), "rb") as f:
            return f.read()


def read_artifacts(client: MlflowClient, run_id: str, paths: tuple[str, ...]) -> dict[str, bytes | None]:
    """Several artifacts of a run, each folder listed once; None for each one the run does not have."""
    listed: dict[str | None, set[str]] = {}
    found: dict[str, bytes | None] = {}
    with tempfile.TemporaryDirectory(prefix="mlflow-green-") as tmp, _no_progress_bar():
        for path in paths:
            folder = posixpath.dirname(path) or None
            if folder not in listed:
                listed[folder] = {f.path for f in client.list_artifacts(run_id, folder)}
            found[path] = None
            if path in listed[folder]:
                with open(client.download_artifacts(run_id, path, tmp), "rb") as f:
                    found[path] = f.read()
    return found
