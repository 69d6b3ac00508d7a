"""A later training sends what earlier ones left: the orphaned spool files of its tracking server.

Once per process, spool folder and tracking URI, after the first write the server took, a
background thread replays the spool files of the same tracking URI that no live process holds
(see :func:`~mlflow_green.record.replay.replay_file`: runs are created, refused writes set aside,
the runs of dead writers ended ``KILLED``). It never delays the training: nothing waits for it.

Example::

    adopt_orphans(spool_folder, "http://mlflow:5000", client)   # returns at once
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow_green.formatting import plural
from mlflow_green.record.spool import canonical_uri, read_header, spool_paths

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

_DONE: set[tuple[str, str]] = set()
_LOCK = threading.Lock()


def adopt_orphans(folder: Path, tracking_uri: str, client: MlflowClient, *, exclude: Path | None = None) -> threading.Thread | None:
    """Replay, in a daemon thread, the orphaned spool files of ``tracking_uri`` in ``folder`` (once per process)."""
    key = (str(folder), canonical_uri(tracking_uri))
    with _LOCK:
        if key in _DONE:
            return None
        _DONE.add(key)
    thread = threading.Thread(target=_replay_all, args=(folder, key[1], client, exclude), name="mlflow-green-orphans", daemon=True)
    thread.start()
    return thread


def _replay_all(folder: Path, tracking_uri: str, client: MlflowClient, exclude: Path | None) -> None:
    from mlflow_green.record.replay import replay_file

    for path in spool_paths(folder):
        if path == exclude:
            continue
        try:
            if canonical_uri(read_header(path).get("tracking_uri") or "") != tracking_uri:
                continue
            result = replay_file(path, client_for=lambda uri: client, retries=0)
        except Exception as exc:  # never a reason to disturb training
            logger.debug("mlflow-green: could not replay %s: %s", path, exc)
            continue
        if result.outcome in ("done", "kept", "pending") and (result.sent or result.created or result.ended or result.rejected):
            logger.warning(
                "mlflow-green: sent %s an earlier process left for %s (%s)%s%s%s",
                plural(result.sent, "write"), result.label, path.name,
                "; created the run" if result.created else "",
                f"; ended it {result.ended}" if result.ended else "",
                f"; {result.rejected} set aside in {result.rejected_file}" if result.rejected else "",
            )


__all__ = ["adopt_orphans"]
