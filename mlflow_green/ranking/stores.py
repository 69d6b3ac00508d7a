"""Ranking on MLflow store objects: resolve experiments and models, fetch the runs, rank them.

:func:`rank_stores` works on any tracking store: a SQL store goes through the fast path of
:mod:`mlflow_green.ranking.sql`, any other store (or the client-API adapters of
:mod:`mlflow_green.ranking.client`) through its search API (:mod:`~mlflow_green.ranking.store_runs`);
a registered model's versions come from :mod:`~mlflow_green.ranking.model_versions`. The look-ups the
``/green/`` view needs (:func:`list_experiments`, :func:`list_metric_keys`, :func:`list_models`,
:func:`resolve_experiments`) are in :mod:`~mlflow_green.ranking.lookups` and importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlflow_green.ranking.core import Ranking, check_by, gc_paused, rank_records
from mlflow_green.ranking.evaluations import attach_evaluations
from mlflow_green.ranking.lookups import list_experiments, list_metric_keys, list_models, resolve_experiments
from mlflow_green.ranking.model_versions import attach_registered_versions, model_records
from mlflow_green.ranking.run_values import metric_key
from mlflow_green.ranking.store_runs import records_by_run_id, run_records

__all__ = ["list_experiments", "list_metric_keys", "list_models", "rank_stores", "resolve_experiments"]


def rank_stores(
    tracking: Any,
    registry: Any,
    *,
    experiments: Sequence[str] = (),
    model: str | None = None,
    metric: str | None = None,
    filter_string: str | None = None,
    measured_only: bool = False,
    by: str = "training",
) -> Ranking:
    """:func:`rank` on MLflow store objects (what the server uses, in-process).

    Args:
        tracking: A tracking store (``SqlAlchemyStore``: the fast path; any other: its search API).
        registry: A model-registry store (needed for ``model=``; ``None`` skips registry look-ups).
        experiments: Experiment names or ids.
        model: A registered model name instead.
        metric: Quality metric (default: each run's ``green.quality_metric``).
        filter_string: MLflow search filter for the runs.
        measured_only: Leave out estimated runs.
        by: ``training`` (quality per kWh) or ``inference`` (quality per joule per prediction).
    """
    check_by(by)
    with gc_paused():
        return _rank_stores(tracking, registry, experiments, model, metric, filter_string, measured_only, by)


def _rank_stores(tracking: Any, registry: Any, experiments: Sequence[str], model: str | None, metric: str | None,
                 filter_string: str | None, measured_only: bool, by: str) -> Ranking:
    metric = metric_key(metric)
    inference = by == "inference"
    if model is not None:
        records, model_name = model_records(tracking, registry, model, metric, inference)
        if inference:
            records = attach_evaluations(records, lambda ids: records_by_run_id(tracking, ids, metric, True))
        rows = rank_records(records, metric=metric, measured_only=measured_only, by=by)
        return Ranking(rows=rows, metric=metric, model_name=model_name, measured_only=measured_only, by=by)
    resolved = resolve_experiments(tracking, experiments)
    ids = [experiment_id for experiment_id, _ in resolved]
    records = run_records(tracking, ids, metric, filter_string, inference)
    records = attach_registered_versions(records, registry)
    if inference:
        records = attach_evaluations(records, lambda ids: records_by_run_id(tracking, ids, metric, True))
    rows = rank_records(records, metric=metric, measured_only=measured_only, by=by)
    return Ranking(rows=rows, metric=metric, experiments=tuple(resolved), measured_only=measured_only,
                   filter_string=filter_string or None, by=by)
