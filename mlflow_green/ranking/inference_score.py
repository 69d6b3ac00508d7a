"""Scoring a run by inference: quality per (joule per prediction), from the run or its evaluation.

Pure (no MLflow). A row's inference figures come from its **evaluation**: the run named by its
registered version's ``green.inference_run`` tag when there is one (the latest ``green``
evaluation of that model), else the run itself (evaluated inside its training run, or an
evaluation run ranked on its own). The quality metric is read from the run first, then from the
evaluation (where MLflow's default evaluator logs ``accuracy_score``).

Example:
    >>> from mlflow_green.ranking.run_record import RunRecord
    >>> run = RunRecord("r1", "cnn", "1", {"acc": 0.9}, {}, evaluation=RunRecord(
    ...     "e1", "eval", "1", {"green/inference_energy_per_prediction_j": 0.002}, {}))
    >>> figures = inference_figures(run, "acc")
    >>> figures.cost_j, round(figures.per_j), figures.reason, figures.source_run_id
    (0.002, 450, None, 'e1')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_green.ranking.run_values import is_true, metric_key, quality_reason
from mlflow_green.record import schema

if TYPE_CHECKING:
    from mlflow_green.ranking.run_record import RunRecord

NOT_EVALUATED = (
    f"not evaluated: no {schema.INFERENCE_ENERGY_PER_PREDICTION_J} "
    "(mlflow.models.evaluate(model_uri, data, targets=..., model_type=..., evaluators=\"green\"))"
)


@dataclass(frozen=True)
class InferenceFigures:
    """What ranking by inference reads for one row.

    Attributes:
        cost_j: Joules per prediction at the headline batch size (None when not logged).
        quality_metric: The quality metric used.
        quality: Its value (from the run, else from the evaluation).
        per_j: ``quality / cost_j`` (NaN when not ranked).
        estimated: The inference energy is (partly) an estimate.
        reason: Why the row is not ranked, or None.
        source_run_id: The run the inference figures come from.
        values: The other figures: latency (p50, p95) in ms, throughput, batch size.
    """

    cost_j: float | None
    quality_metric: str | None
    quality: float | None
    per_j: float
    estimated: bool
    reason: str | None
    source_run_id: str | None
    values: Mapping[str, Any]


def evaluation_of(record: RunRecord) -> RunRecord:
    """The run holding ``record``'s inference figures (its evaluation, else itself)."""
    return record.evaluation if record.evaluation is not None else record


def inference_figures(record: RunRecord, metric: str | None) -> InferenceFigures:
    """Score one row by quality per joule per prediction (see the module docstring)."""
    evaluation = evaluation_of(record)
    own, theirs = record.metrics, evaluation.metrics
    tagged = metric_key(record.tags.get(schema.TAG_QUALITY_METRIC))
    tagged_evaluation = tagged if evaluation is record else metric_key(evaluation.tags.get(schema.TAG_QUALITY_METRIC))
    quality_metric = metric or tagged or tagged_evaluation
    quality = None
    if quality_metric:
        quality = own.get(quality_metric, theirs.get(quality_metric))
        if quality is None and quality_metric in (tagged, tagged_evaluation):
            quality = own.get(schema.QUALITY)
    cost = theirs.get(schema.INFERENCE_ENERGY_PER_PREDICTION_J)
    estimated = is_true(evaluation.tags.get(schema.TAG_INFERENCE_ESTIMATED))
    reason = record.missing or record.evaluation_missing or _reason(quality_metric, quality, cost)
    per_j = math.nan if reason else float(quality) / float(cost)  # type: ignore[arg-type]
    batch = evaluation.tags.get(schema.TAG_INFERENCE_BATCH_SIZE)
    values = {
        "latency_ms": theirs.get(schema.INFERENCE_LATENCY_MS),
        "latency_p95_ms": theirs.get(schema.INFERENCE_LATENCY_P95_MS),
        "throughput_per_s": theirs.get(schema.INFERENCE_THROUGHPUT_PER_S),
        "batch_size": int(batch) if batch and batch.isdigit() else None,
    }
    source = evaluation.run_id if cost is not None else None
    return InferenceFigures(cost, quality_metric, quality, per_j, estimated, reason, source, values)


def _reason(quality_metric: str | None, quality: float | None, cost: float | None) -> str | None:
    key = schema.INFERENCE_ENERGY_PER_PREDICTION_J
    if cost is None:
        return NOT_EVALUATED
    if math.isnan(cost):
        return f"{key} is NaN"
    if cost <= 0 or math.isinf(cost):
        return f"{key} is {cost:g} J, not a positive number"
    return quality_reason(quality_metric, quality)
