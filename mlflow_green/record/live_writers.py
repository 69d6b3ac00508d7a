"""The live background writers of this process, one per run, so that a later fit's writes stay in order.

Example:
    >>> tracking_uri_of(None) == __import__("mlflow").get_tracking_uri()
    True
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow_green.record.writer import BackgroundWriter

LIVE: dict[tuple[str, str], BackgroundWriter] = {}
"""The live writers of this process, by (tracking URI, run id or creation token)."""
LIVE_LOCK = threading.Lock()
"""Guards :data:`LIVE`; never taken while holding a writer's own lock."""
WRITERS: weakref.WeakSet[BackgroundWriter] = weakref.WeakSet()
"""Every writer of this process, live or not."""

EXIT_SEND_S = 1.0
"""At the interpreter's exit, writes still waiting to be gathered into a request are sent, waiting at
most this long for all writers together; what is not sent by then stays spooled (``mlflow-green
sync``, or the next training against the same server, sends it)."""


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


def _send_gathered_at_exit() -> None:
    """The interpreter exits: send what the writers were gathering, within :data:`EXIT_SEND_S`."""
    deadline = time.monotonic() + EXIT_SEND_S
    for writer in list(WRITERS):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        with contextlib.suppress(Exception):
            if writer.sending():
                writer.flush(remaining)


def _forked() -> None:
    """In a forked child (``os.fork``, a fork-started worker): the writers it inherited are its parent's, and inert
    here — a child leaving the parent's ``with track()`` block or fit (``sys.exit`` in the child, an exception) wrote
    its own end into the parent's run (``FAILED`` mid-block, a second point at a step), removed its spool file, and
    waited for a writer thread that fork did not copy. A measurement the child starts gets writers of its own."""
    for writer in list(WRITERS):
        writer._forked = True
    LIVE.clear()


atexit.register(_send_gathered_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
