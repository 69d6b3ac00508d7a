"""Talking to MLflow store objects generically: a client's store, which kind a store is, and paging through searches.

Used by ranking (its SQL fast path, the server's API) and by the read of a run's earlier figures
(:mod:`mlflow_green.record.latest_steps`). A store's class is imported already when an instance exists, so :func:`is_sql_store` and
:func:`is_rest_store` look it up in ``sys.modules``: they never import SQLAlchemy or the REST
client for a store of another kind. :func:`pages` walks any paged MLflow search (runs,
experiments, registered models, model versions), for stores and ``MlflowClient`` alike.

Example:
    >>> is_sql_store(object()), is_rest_store(object())
    (False, False)
    >>> class Page(list):
    ...     token = None
    >>> book = {None: Page([1, 2]), "p2": Page([3])}
    >>> book[None].token = "p2"
    >>> [list(page) for page in pages(book.__getitem__)]
    [[1, 2], [3]]
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any


def tracking_store(client: Any) -> Any:
    """The tracking store behind an ``MlflowClient`` (a private attribute of MLflow's: None where it is not there)."""
    try:
        return client._tracking_client.store
    except Exception:
        return None


def is_sql_store(tracking: Any) -> bool:
    """An MLflow ``SqlAlchemyStore`` (sqlite, PostgreSQL, MySQL...): the SQL fast path applies."""
    return _is_instance(tracking, "mlflow.store.tracking.sqlalchemy_store", "SqlAlchemyStore")


def is_rest_store(tracking: Any) -> bool:
    """An MLflow ``RestStore`` (a tracking server): ranking asks its ``/green/api`` first."""
    return _is_instance(tracking, "mlflow.store.tracking.rest_store", "RestStore")


def pages(search: Callable[[str | None], Any]) -> Iterator[Any]:
    """Every page of a search: ``search(page_token)`` returns one page (an MLflow ``PagedList``,
    whose ``token`` names the next page, or is None or empty after the last)."""
    token = None
    while True:
        page = search(token)
        yield page
        token = getattr(page, "token", None)
        if not token:
            return


def _is_instance(obj: Any, module: str, name: str) -> bool:
    """``isinstance`` without importing ``module`` (an instance's class is imported already)."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls is not None and isinstance(obj, cls)
