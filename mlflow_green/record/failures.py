"""Tell a write that failed for now from one the tracking server refused for good.

Transient (retried with backoff, order kept): the connection failed or timed out, the server
answered 5xx or 429 (too many requests), a local store was busy. Permanent (kept aside in the
spool's ``rejected/`` file with MLflow's message, and the next writes go on): any other 4xx —
the run was deleted, a value is invalid, access is denied — and a write that cannot be sent at
all (malformed).

Example:
    >>> from mlflow.exceptions import MlflowException
    >>> from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
    >>> is_transient(MlflowException("Run 'x' not found", error_code=RESOURCE_DOES_NOT_EXIST))
    False
    >>> is_transient(ConnectionError("connection refused"))
    True
"""

from __future__ import annotations

from typing import Any

_MAX_MESSAGE = 400


_DATABASE_UNAVAILABLE = frozenset({"OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError"})


class TransientFailure(Exception):
    """Raised by an operation that cannot be done yet (e.g. its parent run is not created yet)."""


def http_status(exc: BaseException) -> int | None:
    """The HTTP status MLflow gives ``exc`` (its error code mapped to a status), None if not MLflow's."""
    getter: Any = getattr(exc, "get_http_status_code", None)
    if getter is None:
        return None
    try:
        return int(getter())
    except Exception:
        return None


def is_transient(exc: BaseException) -> bool:
    """True if trying the same write again later may succeed."""
    if isinstance(exc, TransientFailure):
        return True
    status = http_status(exc)
    if status is not None:
        return status == 429 or status >= 500
    try:
        import requests

        if isinstance(exc, requests.exceptions.RequestException):
            return True
    except ImportError:  # pragma: no cover - requests comes with mlflow
        pass
    if type(exc).__name__ in _DATABASE_UNAVAILABLE:  # SQLAlchemy: the database is down or busy
        return True
    return isinstance(exc, (ConnectionError, TimeoutError, OSError))


def describe(exc: BaseException) -> str:
    """A one-line account of ``exc``: MLflow's error code and message, or the exception's type and text."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    code = getattr(exc, "error_code", None)
    if isinstance(code, str) and code and code not in message:
        message = f"{code}: {message}"
    elif not code:
        message = f"{type(exc).__name__}: {message}"
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"


__all__ = ["TransientFailure", "describe", "http_status", "is_transient"]
