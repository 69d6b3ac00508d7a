"""The pure ranking: quality-per-cost scoring, ties and the Pareto flags.

Nothing here imports MLflow: :func:`rank_records` turns :class:`RunRecord` values (what a run
logged, :mod:`~mlflow_green.ranking.run_record`) into :class:`RankedRow` values held by a
:class:`Ranking` (:mod:`~mlflow_green.ranking.leaderboard`); those names are importable from here
too. The rules are in the :mod:`mlflow_green.ranking` docstring.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mlflow_green.ranking.inference_score import InferenceFigures, inference_figures
from mlflow_green.ranking.leaderboard import RankedRow, Ranking
from mlflow_green.ranking.run_record import Compression, RunRecord
from mlflow_green.ranking.run_values import is_true, metric_key, quality_reason
from mlflow_green.record import schema

__all__ = [
    "BY_VALUES", "TIE_REL_TOL", "Compression", "RankedRow", "Ranking", "RunRecord", "check_by", "gc_paused",
    "pareto_flags", "rank_records",
]

BY_VALUES: tuple[str, ...] = ("training", "inference")
"""What a leaderboard ranks by: quality per kWh of training, or quality per joule per prediction."""

TIE_REL_TOL = 1e-9
"""Relative tolerance under which two accuracies per kWh tie (share a rank)."""


def rank_records(
    records: Iterable[RunRecord], *, metric: str | None = None, measured_only: bool = False, by: str = "training"
) -> tuple[RankedRow, ...]:
    """Rank runs by quality per kWh: ranked rows best first, then unranked rows with a reason.

    Args:
        records: The runs (or model versions' source runs).
        metric: Quality metric for every run (default: each run's ``green.quality_metric`` tag).
        measured_only: Leave out runs whose energy is an estimate.
        by: ``training`` (quality per kWh) or ``inference`` (quality per joule per prediction, from
            each run's evaluation; see :mod:`mlflow_green.ranking.inference_score`).

    Returns:
        The rows; see the module docstring for the rules.
    """
    metric = metric_key(metric)
    ranked: list[_Scored] = []
    unranked: list[_Scored] = []
    score = _score_inference if check_by(by) == "inference" else _score
    for record in records:
        scored = score(record, metric)
        if measured_only and scored.estimated:
            continue
        (unranked if scored.reason else ranked).append(scored)
    ranked.sort(key=lambda s: (-s.per_kwh, -s.quality, s.energy, s.record.run_name, s.record.run_id,
                               _version_key(s.record.model_version)))
    pareto = pareto_flags([(s.quality, s.energy) for s in ranked])
    rows: list[RankedRow] = []
    group_rank, group_value = 0, math.nan
    for index, (scored, on_front) in enumerate(zip(ranked, pareto, strict=True)):
        if index == 0 or not math.isclose(scored.per_kwh, group_value, rel_tol=TIE_REL_TOL):
            group_rank, group_value = index + 1, scored.per_kwh
        rows.append(scored.row(group_rank, on_front))
    unranked.sort(key=lambda s: (-(s.record.start_time_ms or 0), s.record.run_name, s.record.run_id,
                                 _version_key(s.record.model_version)))
    rows.extend(s.row(None, False) for s in unranked)
    return tuple(rows)


@dataclass(frozen=True)
class _Scored:
    record: RunRecord
    quality_metric: str | None
    quality: Any
    energy: Any
    per_kwh: float
    estimated: bool
    reason: str | None
    inference: InferenceFigures | None = None

    def row(self, rank: int | None, pareto: bool) -> RankedRow:
        """The leaderboard line: the run's own figures, and by inference those of its evaluation."""
        record, figures = self.record, self.inference
        metrics = record.metrics
        score = None if self.reason else self.per_kwh
        common = {
            "rank": rank, "run_id": record.run_id, "run_name": record.run_name, "experiment_id": record.experiment_id,
            "quality_metric": self.quality_metric, "quality": self.quality,
            "emissions_kg": metrics.get(schema.EMISSIONS_KG), "estimated": self.estimated, "pareto": pareto,
            "compression": Compression.from_run(metrics, record.tags), "reason": self.reason,
            "status": record.status, "start_time_ms": record.start_time_ms, "model_name": record.model_name,
            "model_version": record.model_version, "model_aliases": record.model_aliases,
            "gate": record.version_tags.get(schema.TAG_GATE),
            "gate_reasons": record.version_tags.get(schema.TAG_GATE_REASONS),
        }
        if figures is None:
            return RankedRow(**common, energy_kwh=self.energy, accuracy_per_kwh=score)
        values = figures.values
        return RankedRow(
            **common, energy_kwh=metrics.get(schema.ENERGY_KWH), energy_per_prediction_j=figures.cost_j,
            accuracy_per_j=score, latency_ms=values.get("latency_ms"), latency_p95_ms=values.get("latency_p95_ms"),
            throughput_per_s=values.get("throughput_per_s"), inference_batch_size=values.get("batch_size"),
            inference_run_id=figures.source_run_id,
        )


def check_by(by: str) -> str:
    """``by`` if it is one of :data:`BY_VALUES`, else a :class:`~mlflow_green.errors.RankRequestError`."""
    if by not in BY_VALUES:
        from mlflow_green.errors import RankRequestError

        raise RankRequestError(f"by must be one of {', '.join(BY_VALUES)}, got {by!r}")
    return by


def _score_inference(record: RunRecord, metric: str | None) -> _Scored:
    figures = inference_figures(record, metric)
    return _Scored(record, figures.quality_metric, figures.quality, figures.cost_j, figures.per_j,
                   figures.estimated, figures.reason, figures)


def _score(record: RunRecord, metric: str | None) -> _Scored:
    metrics, tags = record.metrics, record.tags
    quality_metric = metric or metric_key(tags.get(schema.TAG_QUALITY_METRIC))
    energy = metrics.get(schema.ENERGY_KWH)
    quality = metrics.get(quality_metric) if quality_metric else None
    if quality is None and quality_metric and quality_metric == metric_key(tags.get(schema.TAG_QUALITY_METRIC)):
        quality = metrics.get(schema.QUALITY)  # the callbacks log the value as green/quality
    estimated = is_true(tags.get(schema.TAG_ESTIMATED))
    reason = record.missing or _unranked_reason(quality_metric, quality, energy)
    per_kwh = math.nan if reason else quality / energy  # type: ignore[operator]
    return _Scored(record, quality_metric, quality, energy, per_kwh, estimated, reason)


def pareto_flags(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Which ``(quality, energy)`` points no other point dominates (higher quality is better,
    lower energy is better; dominating = at least as good in both and strictly better in one).

    Example:
        >>> pareto_flags([(0.9, 1.0), (0.8, 2.0), (0.95, 3.0), (0.9, 1.0)])
        [True, False, True, True]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    flags = [False] * len(points)
    best_cheaper = -math.inf  # best quality among strictly cheaper points
    start = 0
    while start < len(order):
        energy = points[order[start]][1]
        end = start
        while end < len(order) and points[order[end]][1] == energy:
            end += 1
        group_best = points[order[start]][0]  # sorted by quality descending within equal energy
        if group_best > best_cheaper:
            for i in order[start:end]:
                flags[i] = points[i][0] == group_best
        best_cheaper = max(best_cheaper, group_best)
        start = end
    return flags


def _unranked_reason(quality_metric: str | None, quality: float | None, energy: float | None) -> str | None:
    if energy is None:
        return f"no {schema.ENERGY_KWH} logged"
    if math.isnan(energy):
        return f"{schema.ENERGY_KWH} is NaN"
    if energy == 0:
        return "energy is 0"
    if energy < 0 or math.isinf(energy):
        return f"energy is {energy:g} kWh, not a positive number"
    return quality_reason(quality_metric, quality)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a leaderboard is built.

    Ranking 10 000 runs allocates a few hundred thousand small containers and nothing cyclic;
    with the collector on, its full passes over that growing heap take a third of the time.
    Reference counting still frees everything; the collector is re-enabled on exit (unless it
    was already off).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _version_key(version: str | None) -> int:
    try:
        return int(version or 0)
    except ValueError:
        return 0

