"""The step of each chosen metric's latest point in one run: from a SQL tracking store's table, else ``get_run``.

MLflow keeps each metric's point of highest step in its ``latest_metrics`` table; ``MlflowClient.get_run``
reads those along with the run's tags, params, inputs and outputs — 5–12 ms of CPU on a sqlite store. A
callback logging into the user's run asks at every fit whether earlier fits left figures there
(:mod:`mlflow_green.training.run_history`), as does a ``track()`` block in an active run: against an MLflow
``SqlAlchemyStore`` (sqlite, PostgreSQL, MySQL) only the wanted keys' rows are read, with SQLAlchemy Core
(~1–2 ms). Any other store, or an MLflow whose store internals differ, is asked through ``get_run``; a SQL
read that fails is asked again that way.

Example:
    >>> import pathlib, tempfile
    >>> from mlflow import MlflowClient
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    >>> run = client.create_run(client.create_experiment("demo", artifact_location=(folder / "artifacts").as_uri()))
    >>> _ = client.log_metric(run.info.run_id, "green/energy_kwh", 0.1, step=3)
    >>> latest_steps(client, run.info.run_id, ("green/energy_kwh", "green/energy_test_kwh"))
    {'green/energy_kwh': 3}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from mlflow_green.record.store_access import is_sql_store, tracking_store

logger = logging.getLogger(__name__)


def latest_steps(client: Any, run_id: str, keys: Sequence[str]) -> dict[str, int]:
    """The step of the latest point of each of ``keys`` that ``run_id`` holds (keys it does not hold are left out).

    Raises what MLflow raises where it is asked through ``get_run`` (an unknown run, a server that is gone).
    """
    from_table = table_latest_steps(client, run_id, keys)
    if from_table is not None:
        return from_table
    data = client.get_run(run_id).data
    latest = getattr(data, "_metric_objs", None)
    if isinstance(latest, list) and all(hasattr(m, "step") for m in latest):
        return {m.key: int(m.step) for m in latest if m.key in keys}
    return {key: max(int(m.step) for m in client.get_metric_history(run_id, key)) for key in keys if key in data.metrics}


def table_latest_steps(client: Any, run_id: str, keys: Sequence[str], *, sqlite_wait_ms: int | None = None
                       ) -> dict[str, int] | None:
    """As :func:`latest_steps`, read from a SQL store's ``latest_metrics`` table only: None where the client's store is
    not an MLflow ``SqlAlchemyStore`` or the read fails (a locked database, another MLflow's internals).

    ``sqlite_wait_ms``: on a sqlite store, how long the read waits for a lock another connection holds (MLflow's own
    sessions wait 20 s) before it fails."""
    store = tracking_store(client)
    if not is_sql_store(store):
        return None
    try:
        return _sql_latest_steps(store, run_id, keys, sqlite_wait_ms)
    except Exception as exc:  # another MLflow's internals, a locked database: asked the usual way
        logger.debug("mlflow-green: latest steps of run %s not read from the store's table (%r)", run_id, exc)
        return None


def _sql_latest_steps(store: Any, run_id: str, keys: Sequence[str], sqlite_wait_ms: int | None = None) -> dict[str, int]:
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric
    from sqlalchemy import select, text

    table = SqlLatestMetric.__table__
    query = select(table.c.key, table.c.step).where(table.c.run_uuid == run_id, table.c.key.in_(list(keys)))
    with store.ManagedSessionMaker() as session:
        connection = session.connection()
        if sqlite_wait_ms is None or getattr(store, "db_type", None) != "sqlite":
            rows = connection.execute(query).all()
        else:  # the pooled connection's own wait given back after the read
            waited_ms = connection.execute(text("PRAGMA busy_timeout")).scalar()
            connection.execute(text(f"PRAGMA busy_timeout = {int(sqlite_wait_ms)}"))
            try:
                rows = connection.execute(query).all()
            finally:
                connection.execute(text(f"PRAGMA busy_timeout = {int(waited_ms or 0)}"))
    return {str(key): int(step) for key, step in rows}


__all__ = ["latest_steps", "table_latest_steps"]
