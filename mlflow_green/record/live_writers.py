"""The live background writers of this process, one per run, so that a later fit's writes stay in order.

Example:
    >>> tracking_uri_of(None) == __import__("mlflow").get_tracking_uri()
    True
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow_green.record.writer import BackgroundWriter

LIVE: dict[tuple[str, str], BackgroundWriter] = {}
"""The live writers of this process, by (tracking URI, run id or creation token)."""
LIVE_LOCK = threading.Lock()
"""Guards :data:`LIVE`; never taken while holding a writer's own lock."""


def forget_writer(writer: object) -> None:
    """Take ``writer`` out of :data:`LIVE` (it stopped, or sent everything and was closed)."""
    with LIVE_LOCK:
        for key in [key for key, value in LIVE.items() if value is writer]:
            del LIVE[key]


def tracking_uri_of(client: Any) -> str:
    """The tracking URI of ``client`` (None: the current one)."""
    uri = None
    if client is not None:
        uri = getattr(client, "tracking_uri", None) or getattr(getattr(client, "_tracking_client", None), "tracking_uri", None)
    if isinstance(uri, str):
        return uri
    try:
        import mlflow

        return mlflow.get_tracking_uri()
    except Exception:
        return ""
