"""A read from the tracking server that training waits for at most a bound: in a worker thread, given up on
(None) when late or failing — measurement never stalls or breaks training on the server.

Example:
    >>> read_within(lambda: 42, 1.0)
    42
    >>> read_within(lambda: 1 / 0, 1.0) is None
    True
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

Read = TypeVar("Read")


def read_within(read: Callable[[], Read | None], timeout_s: float, what: str = "the run's earlier fits",
                consequence: str = "its totals and steps are not continued") -> Read | None:
    """``read()`` in a worker thread, waited for at most ``timeout_s`` (None if it is late or raises)."""
    result: list[Read | None] = []

    def worker() -> None:
        try:
            result.append(read())
        except Exception as exc:  # measurement never stops the training
            logger.debug("mlflow-green: could not read %s: %r", what, exc)

    thread = threading.Thread(target=worker, name="mlflow-green-run-history", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        logger.warning("mlflow-green: %s could not be read within %.3g s: %s (the tracking server is slow or down)",
                       what, timeout_s, consequence)
        return None
    return result[0] if result else None


__all__ = ["read_within"]
