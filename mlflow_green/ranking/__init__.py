"""Rank runs and registered-model versions by quality per kWh, and find the Pareto frontier.

The core is pure: :func:`rank_records` turns :class:`RunRecord` values (what a run logged) into
:class:`RankedRow` values. :func:`rank` fetches the records from MLflow and ranks them; it is
what ``mlflow-green rank`` and the ``/green/`` view of ``mlflow server --app-name green`` use.

Rules:

- **Quality** is the latest value of the quality metric: ``metric=`` if given, else the metric
  named by each run's ``green.quality_metric`` tag. Higher is better.
- **Energy** is the latest ``green/energy_kwh`` (a running total, so the run's total).
- **Accuracy per kWh** is quality ÷ energy. Runs with no energy, zero or negative energy, or no
  quality are listed but not ranked, each with the reason; nothing divides by zero.
- **Ties share a rank** (competition ranking: 1, 1, 3): two runs tie when their accuracy per
  kWh agrees to 9 significant digits. Within a tie, the more accurate run is listed first.
- **Pareto frontier**: among ranked runs, a run is on the frontier when no other run is at least
  as accurate and at most as costly, and strictly better in one of the two.
- ``measured_only`` drops the runs whose energy is an estimate (``green.estimated=true``)
  before ranking, so ranks and the frontier are those of the measured runs.
- ``by="inference"`` ranks by quality per **joule per prediction** instead: the cost is the
  latest ``green/inference_energy_per_prediction_j`` (the headline batch size) of each run's
  evaluation — the run named by its registered version's ``green.inference_run`` tag, else the
  run itself — with the same ties, frontier (quality versus J/prediction) and reasons; an
  evaluation run joined to its training run is not listed twice; ``measured_only`` reads
  ``green.inference_estimated``. See :mod:`mlflow_green.ranking.inference_score`.

Example:
    >>> from mlflow_green.ranking import RunRecord, rank_records
    >>> rows = rank_records([
    ...     RunRecord("a", "big", "1", {"acc": 0.98, "green/energy_kwh": 0.002}, {}),
    ...     RunRecord("b", "small", "1", {"acc": 0.95, "green/energy_kwh": 0.001}, {}),
    ...     RunRecord("c", "broken", "1", {"acc": 0.97}, {}),
    ... ], metric="acc")
    >>> [(r.rank, r.run_name, round(r.accuracy_per_kwh or 0), r.pareto) for r in rows]
    [(1, 'small', 950, True), (2, 'big', 490, True), (None, 'broken', 0, False)]
    >>> rows[2].reason
    'no green/energy_kwh logged'

Layout (everything public is importable from ``mlflow_green.ranking``):

- :mod:`~mlflow_green.ranking.core`: scoring, ties and Pareto flags (no MLflow), on the values of
  :mod:`~mlflow_green.ranking.run_record` (what a run logged), :mod:`~mlflow_green.ranking.leaderboard`
  (rows and the board) and :mod:`~mlflow_green.ranking.run_values` (reading one value);
- :mod:`~mlflow_green.ranking.inference_score` and :mod:`~mlflow_green.ranking.evaluations`:
  scoring by inference, and joining runs to their evaluations (no MLflow);
- :mod:`~mlflow_green.ranking.sql`: the fast path reading SQL tracking stores directly;
- :mod:`~mlflow_green.ranking.stores`: ranking on store objects, reading their runs
  (:mod:`~mlflow_green.ranking.store_runs`, :mod:`~mlflow_green.record.store_access`) and registered
  versions (:mod:`~mlflow_green.ranking.model_versions`); the view's look-ups
  (:mod:`~mlflow_green.ranking.lookups`);
- :mod:`~mlflow_green.ranking.client`: the ``MlflowClient`` fallback and the remote ``/green/api``;
- :mod:`~mlflow_green.ranking.api`: :func:`rank` and :func:`rank_client`.
"""

from __future__ import annotations

import logging

from mlflow_green.ranking.api import rank, rank_client
from mlflow_green.ranking.client import API_PATH, _ClientRegistry, _ClientTracking
from mlflow_green.ranking.core import (
    BY_VALUES,
    TIE_REL_TOL,
    Compression,
    RankedRow,
    Ranking,
    RunRecord,
    gc_paused,
    pareto_flags,
    rank_records,
)
from mlflow_green.ranking.stores import (
    list_experiments,
    list_metric_keys,
    list_models,
    rank_stores,
    resolve_experiments,
)

logger = logging.getLogger(__name__)

__all__ = [
    "API_PATH",
    "BY_VALUES",
    "TIE_REL_TOL",
    "Compression",
    "RankedRow",
    "Ranking",
    "RunRecord",
    "gc_paused",
    "list_experiments",
    "list_metric_keys",
    "list_models",
    "pareto_flags",
    "rank",
    "rank_client",
    "rank_records",
    "rank_stores",
    "resolve_experiments",
]
