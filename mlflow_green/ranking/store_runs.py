"""Reading runs from a tracking store as :class:`~mlflow_green.ranking.run_record.RunRecord` values.

A SQL store goes through the fast path of :mod:`mlflow_green.ranking.sql` (only the columns
ranking needs); any other store, or a SQL store whose internals the fast path does not know,
through the store's search API (whole runs, page after page).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from mlflow_green.ranking.run_record import RunRecord
from mlflow_green.ranking.sql import _request_error, _sql_records, _SqlPathUnavailable
from mlflow_green.record.store_access import is_sql_store, pages

logger = logging.getLogger("mlflow_green.ranking")

_PAGE_RUNS = 50_000


def run_records(
    tracking: Any, experiment_ids: Sequence[str], metric: str | None, filter_string: str | None,
    inference: bool = False,
) -> list[RunRecord]:
    """The active runs of the experiments that match ``filter_string``."""
    if is_sql_store(tracking):
        try:
            return _sql_records(tracking, experiment_ids=experiment_ids, metric=metric, filter_string=filter_string,
                                inference=inference)
        except _SqlPathUnavailable as exc:
            logger.info("mlflow-green: SQL fast path unavailable (%s); using the store's search API", exc)
    return search_records(tracking, experiment_ids, filter_string)


def search_records(tracking: Any, experiment_ids: Sequence[str], filter_string: str | None) -> list[RunRecord]:
    """:func:`run_records` through the store's ``search_runs`` (an invalid filter: ``RankRequestError``)."""
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    def search(token: str | None) -> Any:
        try:
            return tracking.search_runs(
                experiment_ids=list(experiment_ids), filter_string=filter_string or "",
                run_view_type=ViewType.ACTIVE_ONLY, max_results=_PAGE_RUNS, page_token=token,
            )
        except MlflowException as exc:
            raise _request_error(exc, filter_string) from exc

    return [record_from_run(run) for page in pages(search) for run in page]


def records_by_run_id(tracking: Any, run_ids: Iterable[str], metric: str | None,
                      inference: bool = False) -> dict[str, RunRecord]:
    """The runs of ``run_ids`` that exist, by id (deleted or unknown ones are left out)."""
    from mlflow.exceptions import MlflowException

    run_ids = sorted(set(run_ids))
    if not run_ids:
        return {}
    if is_sql_store(tracking):
        try:
            return {r.run_id: r for r in _sql_records(tracking, run_ids=run_ids, metric=metric, inference=inference)}
        except _SqlPathUnavailable as exc:
            logger.info("mlflow-green: SQL fast path unavailable (%s)", exc)
    records = {}
    for run_id in run_ids:
        try:
            records[run_id] = record_from_run(tracking.get_run(run_id))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    return records


def record_from_run(run: Any) -> RunRecord:
    """A whole MLflow ``Run`` as a record (its name, else the ``mlflow.runName`` tag, else its id's start)."""
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    info, data = run.info, run.data
    return RunRecord(
        run_id=info.run_id,
        run_name=info.run_name or data.tags.get(MLFLOW_RUN_NAME) or info.run_id[:8],
        experiment_id=str(info.experiment_id),
        metrics=dict(data.metrics),
        tags=dict(data.tags),
        status=info.status,
        start_time_ms=info.start_time,
    )
