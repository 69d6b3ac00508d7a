"""Talking to MLflow store objects generically: which kind a store is.

A store's class is imported already when an instance exists, so :func:`is_sql_store` and
:func:`is_rest_store` look it up in ``sys.modules``: they never import SQLAlchemy or the REST
client for a store of another kind.

Example:
    >>> is_sql_store(object()), is_rest_store(object())
    (False, False)
"""

from __future__ import annotations

import sys
from typing import Any


def is_sql_store(tracking: Any) -> bool:
    """An MLflow ``SqlAlchemyStore`` (sqlite, PostgreSQL, MySQL...): the SQL fast path applies."""
    return _is_instance(tracking, "mlflow.store.tracking.sqlalchemy_store", "SqlAlchemyStore")


def is_rest_store(tracking: Any) -> bool:
    """An MLflow ``RestStore`` (a tracking server): ranking asks its ``/green/api`` first."""
    return _is_instance(tracking, "mlflow.store.tracking.rest_store", "RestStore")


def _is_instance(obj: Any, module: str, name: str) -> bool:
    """``isinstance`` without importing ``module`` (an instance's class is imported already)."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls is not None and isinstance(obj, cls)
