"""The entry points: :func:`rank` (any tracking URI) and :func:`rank_client` (an ``MlflowClient``).

:func:`rank` picks the path: a remote green server's ``/green/api``
(:mod:`mlflow_green.ranking.client`), else :func:`~mlflow_green.ranking.stores.rank_stores` on the
client's stores (the SQL fast path where the store is SQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlflow_green.errors import RankRequestError
from mlflow_green.ranking.arguments import check_rank_arguments
from mlflow_green.ranking.client import (
    _ClientRegistry,
    _ClientTracking,
    _rank_via_api,
    _registry_store,
)
from mlflow_green.ranking.core import Ranking, check_by, gc_paused
from mlflow_green.ranking.filter_checks import check_filter
from mlflow_green.ranking.stores import rank_stores
from mlflow_green.record.store_access import is_rest_store, tracking_store

if TYPE_CHECKING:
    from mlflow import MlflowClient


def rank(
    experiments: str | int | Sequence[str | int] | None = None,
    *,
    model: str | None = None,
    metric: str | None = None,
    filter_string: str | None = None,
    measured_only: bool = False,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    by: str = "training",
) -> Ranking:
    """Rank the runs of experiments, or the versions of a registered model, by quality per kWh
    (``by="training"``) or by quality per joule per prediction (``by="inference"``).

    Against a local sqlite (or other SQL) store, reads only the columns it needs; against a
    remote ``mlflow server --app-name green``, asks the server's ``/green/api``; against any
    other store or server, goes through the MLflow client API.

    Args:
        experiments: Experiment names or ids (one or a list).
        model: A registered model name instead: ranks its versions' source runs.
        metric: Quality metric (default: each run's ``green.quality_metric`` tag), higher is better.
        filter_string: MLflow search filter for the runs, e.g. ``"params.epochs = '8'"``.
        measured_only: Leave out runs whose energy is an estimate.
        tracking_uri: Default: the current tracking URI.
        registry_uri: Default: the current registry URI.
        by: ``training``: quality ÷ ``green/energy_kwh``; ``inference``: quality ÷
            ``green/inference_energy_per_prediction_j`` of each run's evaluation (the run itself,
            or the run its registered version's ``green.inference_run`` names), with the Pareto
            frontier of quality versus joules per prediction and the latency columns.

    Returns:
        The :class:`Ranking`.

    Raises:
        NotFoundError: An experiment or model does not exist (the message lists close matches).
        RankRequestError: Neither or both of experiments and model, an invalid filter, or an unknown ``by``.

    Example::

        ranking = mlflow_green.rank("green-digits-keras", metric="test_accuracy")
        for row in ranking.ranked:
            print(row.rank, row.run_name, row.accuracy_per_kwh, "*" if row.pareto else "")

        by_inference = mlflow_green.rank("green-digits-keras", metric="test_accuracy", by="inference")
        for row in by_inference.ranked:
            print(row.rank, row.run_name, row.energy_per_prediction_j, row.latency_ms, row.accuracy_per_j)
    """
    from mlflow import MlflowClient

    check_rank_arguments(experiments=experiments, model=model, metric=metric, filter_string=filter_string,
                         measured_only=measured_only, tracking_uri=tracking_uri, registry_uri=registry_uri)
    refs = _check_request(experiments, model, filter_string)
    check_by(by)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    tracking = tracking_store(client)
    if is_rest_store(tracking):
        with gc_paused():
            remote = _rank_via_api(tracking, refs, model, metric, filter_string, measured_only, by)
        if remote is not None:
            return remote
    return rank_stores(
        tracking if tracking is not None else _ClientTracking(client),
        _registry_store(client),
        experiments=refs,
        model=model,
        metric=metric,
        filter_string=filter_string,
        measured_only=measured_only,
        by=by,
    )


def rank_client(
    client: MlflowClient,
    experiments: str | int | Sequence[str | int] | None = None,
    *,
    model: str | None = None,
    metric: str | None = None,
    filter_string: str | None = None,
    measured_only: bool = False,
    by: str = "training",
) -> Ranking:
    """:func:`rank` through an ``MlflowClient``'s public API only (any store or server)."""
    check_rank_arguments(experiments=experiments, model=model, metric=metric, filter_string=filter_string,
                         measured_only=measured_only, client=client)
    refs = _check_request(experiments, model, filter_string)
    return rank_stores(
        _ClientTracking(client), _ClientRegistry(client),
        experiments=refs, model=model, metric=metric, filter_string=filter_string, measured_only=measured_only,
        by=by,
    )


def _check_request(
    experiments: str | int | Sequence[str | int] | None, model: str | None, filter_string: str | None
) -> list[str]:
    given = [experiments] if isinstance(experiments, (str, int)) else list(experiments or ())
    refs = [str(r) for r in given]
    if refs and model is not None:
        raise RankRequestError("Rank either experiments or a registered model, not both.")
    if not refs and model is None:
        raise RankRequestError("Nothing to rank: give experiment names or ids, or a registered model name.")
    if model is not None and filter_string:
        raise RankRequestError("filter_string applies to experiment runs; it cannot be combined with a model.")
    if any(not r.strip() for r in refs) or (model is not None and not model.strip()):
        raise RankRequestError("Experiment and model names must not be empty.")
    check_filter(filter_string)  # numbers the database cannot compare, before they reach it
    return refs
