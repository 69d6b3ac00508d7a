"""The pure ranking: the leaderboard's values, quality-per-kWh scoring, ties and the Pareto flags.

Nothing here imports MLflow: :func:`rank_records` turns :class:`RunRecord` values (what a run
logged) into :class:`RankedRow` values, and :class:`Ranking` holds the result. The rules are in
the :mod:`mlflow_green.ranking` docstring.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import math
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mlflow_green.ranking.inference_score import InferenceFigures, inference_figures
from mlflow_green.record import schema

if TYPE_CHECKING:
    import pandas

BY_VALUES: tuple[str, ...] = ("training", "inference")
"""What a leaderboard ranks by: quality per kWh of training, or quality per joule per prediction."""

TIE_REL_TOL = 1e-9
"""Relative tolerance under which two accuracies per kWh tie (share a rank)."""


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compression:
    """What a run logged about its model's compression (``green.compression`` and ``green/model_*``).

    Attributes:
        techniques: From the ``green.compression`` tag, e.g. ``("pruned", "int8")``; empty for none.
        params: Parameters as used by the forward pass (``green/model_params``).
        params_unique: Parameters as stored (shared weights once).
        sparsity: Fraction of zero weights, 0–1.
        weight_bits: Mean bits per stored weight.
        size_bytes: Serialized model size.

    Example:
        >>> Compression(("pruned",), params=151306, sparsity=0.8, weight_bits=32).summary
        'pruned · 151k params · 80% sparse'
        >>> Compression((), params=17290, params_unique=5770, weight_bits=8).summary
        'none · 17.3k params (5.77k stored) · 8-bit'
    """

    techniques: tuple[str, ...] = ()
    params: float | None = None
    params_unique: float | None = None
    sparsity: float | None = None
    weight_bits: float | None = None
    size_bytes: float | None = None

    @classmethod
    def from_run(cls, metrics: Mapping[str, float], tags: Mapping[str, str]) -> Compression:
        """Read the compression summary from a run's latest metrics and tags."""
        get = metrics.get
        return cls(
            _techniques(tags.get(schema.TAG_COMPRESSION)),
            _finite(get(schema.MODEL_PARAMS)),
            _finite(get(schema.MODEL_PARAMS_UNIQUE)),
            _finite(get(schema.MODEL_SPARSITY)),
            _finite(get(schema.MODEL_WEIGHT_BITS)),
            _finite(get(schema.MODEL_SIZE_BYTES)),
        )

    @property
    def summary(self) -> str:
        """One line: techniques, parameters (stored when shared), sparsity, bits below 32."""
        logged = self.techniques or any(
            v is not None for v in (self.params, self.params_unique, self.sparsity, self.weight_bits)
        )
        if not logged:
            return ""
        parts = [",".join(self.techniques) or "none"]
        if self.params:
            text = f"{_si(self.params)} params"
            if self.params_unique and self.params_unique < self.params:
                text += f" ({_si(self.params_unique)} stored)"
            parts.append(text)
        if self.sparsity is not None and self.sparsity >= 0.005:
            parts.append(f"{self.sparsity:.0%} sparse")
        if self.weight_bits is not None and self.weight_bits < 31.5:
            parts.append(f"{self.weight_bits:.3g}-bit")
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, with the ``summary``."""
        return {
            "techniques": list(self.techniques),
            "params": self.params,
            "params_unique": self.params_unique,
            "sparsity": self.sparsity,
            "weight_bits": self.weight_bits,
            "size_bytes": self.size_bytes,
            "summary": self.summary,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Compression:
        """Inverse of :meth:`to_dict`."""
        return cls(
            techniques=tuple(data.get("techniques") or ()),
            params=data.get("params"),
            params_unique=data.get("params_unique"),
            sparsity=data.get("sparsity"),
            weight_bits=data.get("weight_bits"),
            size_bytes=data.get("size_bytes"),
        )


@dataclass(frozen=True)
class RunRecord:
    """What ranking needs from one run: its latest metrics and its tags (and, for a registered
    model, the version it backs).

    Args:
        run_id: The run (empty for a model version without a source run).
        run_name: Display name.
        experiment_id: The run's experiment.
        metrics: Latest metric values by key (at least energy, emissions, the quality metric).
        tags: Run tags by key (at least ``green.quality_metric``, ``green.estimated``, ``green.compression``).
        status: MLflow run status, e.g. ``FINISHED``.
        start_time_ms: Run start, ms since the epoch.
        model_name: Registered model this record stands for (a version's source run).
        model_version: That version.
        model_aliases: The version's aliases, e.g. ``("champion",)``.
        version_tags: The version's tags (``green.gate``, ``green.gate.reasons``).
        missing: Why the run's data is unavailable (e.g. a version without a source run).
        evaluation: The run holding this run's inference figures when another run does (the one
            its registered version's ``green.inference_run`` names); None: the run itself.
        evaluation_missing: Why that evaluation could not be read (e.g. the run was deleted).

    Example:
        >>> RunRecord("0a1b", "baseline", "1", {"green/energy_kwh": 0.01, "val_accuracy": 0.9},
        ...           {"green.quality_metric": "val_accuracy"}).run_name
        'baseline'
    """

    run_id: str
    run_name: str
    experiment_id: str
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    status: str = ""
    start_time_ms: int | None = None
    model_name: str | None = None
    model_version: str | None = None
    model_aliases: tuple[str, ...] = ()
    version_tags: Mapping[str, str] = field(default_factory=dict)
    missing: str | None = None
    evaluation: RunRecord | None = None
    evaluation_missing: str | None = None


@dataclass(frozen=True)
class RankedRow:
    """One line of the leaderboard.

    Attributes:
        rank: 1 = best accuracy per kWh; ties share a rank; ``None`` when not ranked (see ``reason``).
        run_id: The run (empty for a model version without one).
        run_name: Its name.
        experiment_id: Its experiment.
        quality_metric: The quality metric used for this run (``None`` when none was known).
        quality: Its latest value.
        energy_kwh: Latest ``green/energy_kwh``.
        emissions_kg: Latest ``green/emissions_kg``.
        accuracy_per_kwh: ``quality / energy_kwh`` (``None`` when not ranked).
        estimated: The run's energy is (partly) an estimate (``green.estimated=true``).
        pareto: On the accuracy-versus-energy Pareto frontier of the ranked rows.
        compression: Compression summary.
        reason: Why the row is not ranked (``None`` when it is).
        status: MLflow run status.
        start_time_ms: Run start.
        model_name: Registered model (a model ranking, or the run's latest registered version).
        model_version: Version of ``model_name``.
        model_aliases: Aliases of that version.
        gate: The version's ``green.gate`` tag (``passed``/``failed``), if any.
        gate_reasons: The version's ``green.gate.reasons`` tag, if any.
        energy_per_prediction_j: Inference energy per prediction at the headline batch size
            (``green/inference_energy_per_prediction_j``), from the run's evaluation.
        accuracy_per_j: Quality ÷ joules per prediction (ranking by inference; ``None`` otherwise).
        latency_ms: Median time of one call at the headline batch size.
        latency_p95_ms: Its 95th percentile.
        throughput_per_s: Predictions per second at the headline batch size.
        inference_batch_size: The headline batch size of the evaluation.
        inference_run_id: The run the inference figures come from (the run itself or its evaluation).

    In a ranking by inference, ``estimated`` and ``pareto`` are those of the inference energy.

    Example:
        >>> row = RankedRow(rank=1, run_id="0a1b", run_name="baseline", experiment_id="1",
        ...                 quality_metric="val_accuracy", quality=0.9, energy_kwh=0.01,
        ...                 accuracy_per_kwh=90.0)
        >>> row.ranked, row.to_dict()["accuracy_per_kwh"]
        (True, 90.0)
    """

    rank: int | None
    run_id: str
    run_name: str
    experiment_id: str
    quality_metric: str | None = None
    quality: float | None = None
    energy_kwh: float | None = None
    emissions_kg: float | None = None
    accuracy_per_kwh: float | None = None
    estimated: bool = False
    pareto: bool = False
    compression: Compression = field(default_factory=Compression)
    reason: str | None = None
    status: str = ""
    start_time_ms: int | None = None
    model_name: str | None = None
    model_version: str | None = None
    model_aliases: tuple[str, ...] = ()
    gate: str | None = None
    gate_reasons: str | None = None
    energy_per_prediction_j: float | None = None
    accuracy_per_j: float | None = None
    latency_ms: float | None = None
    latency_p95_ms: float | None = None
    throughput_per_s: float | None = None
    inference_batch_size: int | None = None
    inference_run_id: str | None = None

    @property
    def ranked(self) -> bool:
        """True when the row has a rank."""
        return self.rank is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the ``/green/api`` row format); NaN never appears."""
        return {
            "rank": self.rank,
            "run_id": self.run_id,
            "run_name": self.run_name,
            "experiment_id": self.experiment_id,
            "quality_metric": self.quality_metric,
            "quality": _finite(self.quality),
            "energy_kwh": _finite(self.energy_kwh),
            "emissions_kg": _finite(self.emissions_kg),
            "accuracy_per_kwh": _finite(self.accuracy_per_kwh),
            "estimated": self.estimated,
            "pareto": self.pareto,
            "compression": self.compression.to_dict(),
            "reason": self.reason,
            "status": self.status,
            "start_time_ms": self.start_time_ms,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_aliases": list(self.model_aliases),
            "gate": self.gate,
            "gate_reasons": self.gate_reasons,
            "energy_per_prediction_j": _finite(self.energy_per_prediction_j),
            "accuracy_per_j": _finite(self.accuracy_per_j),
            "latency_ms": _finite(self.latency_ms),
            "latency_p95_ms": _finite(self.latency_p95_ms),
            "throughput_per_s": _finite(self.throughput_per_s),
            "inference_batch_size": self.inference_batch_size,
            "inference_run_id": self.inference_run_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RankedRow:
        """Inverse of :meth:`to_dict`."""
        values: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__ if k in data}
        values["compression"] = Compression.from_dict(data.get("compression") or {})
        values["model_aliases"] = tuple(data.get("model_aliases") or ())
        values["estimated"] = bool(data.get("estimated"))
        values["pareto"] = bool(data.get("pareto"))
        values["status"] = data.get("status") or ""
        return cls(**values)


@dataclass(frozen=True)
class Ranking:
    """A leaderboard: ranked rows (best first), then the rows that could not be ranked.

    Attributes:
        rows: Ranked rows in rank order, then unranked rows.
        metric: The quality metric asked for (``None``: each run's ``green.quality_metric``).
        experiments: ``(id, name)`` of the experiments ranked (empty for a model).
        model_name: The registered model ranked (``None`` for experiments).
        measured_only: Estimated runs were left out.
        filter_string: The MLflow filter applied to the runs.
        by: ``training`` (quality per kWh) or ``inference`` (quality per joule per prediction).

    Example:
        >>> ranking = Ranking(rows=(RankedRow(1, "0a1b", "baseline", "1", accuracy_per_kwh=90.0),
        ...                         RankedRow(None, "2c3d", "crashed", "1", reason="energy is 0")))
        >>> [r.run_name for r in ranking.ranked], [r.reason for r in ranking.unranked]
        (['baseline'], ['energy is 0'])
    """

    rows: tuple[RankedRow, ...]
    metric: str | None = None
    experiments: tuple[tuple[str, str], ...] = ()
    model_name: str | None = None
    measured_only: bool = False
    filter_string: str | None = None
    by: str = "training"

    @property
    def ranked(self) -> list[RankedRow]:
        """Rows with a rank, best first."""
        return [r for r in self.rows if r.ranked]

    @property
    def unranked(self) -> list[RankedRow]:
        """Rows that could not be ranked, each with its ``reason``."""
        return [r for r in self.rows if not r.ranked]

    @property
    def pareto(self) -> list[RankedRow]:
        """Rows on the Pareto frontier, cheapest first."""
        return sorted((r for r in self.rows if r.pareto), key=lambda r: (self.cost(r) or 0.0, -(r.quality or 0.0)))

    def cost(self, row: RankedRow) -> float | None:
        """What this ranking divides quality by: ``energy_kwh``, or ``energy_per_prediction_j`` by inference."""
        return row.energy_per_prediction_j if self.by == "inference" else row.energy_kwh

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The headline batch sizes of the ranked rows (by inference): more than one means unlike figures."""
        return tuple(sorted({r.inference_batch_size for r in self.ranked if r.inference_batch_size is not None}))

    def head(self, n: int) -> Ranking:
        """The first ``n`` rows (ranked rows come first)."""
        return replace(self, rows=self.rows[:n])

    def __iter__(self) -> Iterator[RankedRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the ``/green/api/rank`` response)."""
        ranked = self.ranked
        return {
            "by": self.by,
            "metric": self.metric,
            "experiments": [{"id": i, "name": n} for i, n in self.experiments],
            "model_name": self.model_name,
            "measured_only": self.measured_only,
            "filter": self.filter_string,
            "counts": {
                "rows": len(self.rows),
                "ranked": len(ranked),
                "unranked": len(self.rows) - len(ranked),
                "pareto": sum(1 for r in ranked if r.pareto),
            },
            "batch_sizes": list(self.batch_sizes),
            "rows": [r.to_dict() for r in self.rows],
        }

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON."""
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ranking:
        """Inverse of :meth:`to_dict`."""
        return cls(
            rows=tuple(RankedRow.from_dict(r) for r in data.get("rows") or ()),
            metric=data.get("metric"),
            experiments=tuple((str(e["id"]), str(e["name"])) for e in data.get("experiments") or ()),
            model_name=data.get("model_name"),
            measured_only=bool(data.get("measured_only")),
            filter_string=data.get("filter"),
            by=data.get("by") or "training",
        )

    def to_pandas(self) -> pandas.DataFrame:
        """One row per leaderboard line, compression flattened to ``compression_*`` columns."""
        import pandas as pd

        records = []
        for row in self.rows:
            data = row.to_dict()
            compression = data.pop("compression")
            data["compression"] = compression.pop("summary")
            data.update({f"compression_{k}": v for k, v in compression.items()})
            data["compression_techniques"] = ",".join(compression["techniques"])
            records.append(data)
        return pd.DataFrame.from_records(records, columns=list(_flat_columns()))


def _flat_columns() -> Iterator[str]:
    for name in RankedRow.__dataclass_fields__:
        yield name
        if name == "compression":
            yield from (f"compression_{k}" for k in ("techniques", "params", "params_unique", "sparsity",
                                                     "weight_bits", "size_bytes"))


# --- the pure core ---------------------------------------------------------------------------


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
    metric = _metric_key(metric)
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
        if self.inference is not None:
            return self._inference_row(rank, pareto, self.inference)
        record = self.record
        metrics = record.metrics
        return RankedRow(
            rank=rank,
            run_id=record.run_id,
            run_name=record.run_name,
            experiment_id=record.experiment_id,
            quality_metric=self.quality_metric,
            quality=self.quality,
            energy_kwh=self.energy,
            emissions_kg=metrics.get(schema.EMISSIONS_KG),
            accuracy_per_kwh=None if self.reason else self.per_kwh,
            estimated=self.estimated,
            pareto=pareto,
            compression=Compression.from_run(metrics, record.tags),
            reason=self.reason,
            status=record.status,
            start_time_ms=record.start_time_ms,
            model_name=record.model_name,
            model_version=record.model_version,
            model_aliases=record.model_aliases,
            gate=record.version_tags.get(schema.TAG_GATE),
            gate_reasons=record.version_tags.get(schema.TAG_GATE_REASONS),
        )


    def _inference_row(self, rank: int | None, pareto: bool, figures: InferenceFigures) -> RankedRow:
        record = self.record
        metrics = record.metrics
        values = figures.values
        return RankedRow(
            rank=rank, run_id=record.run_id, run_name=record.run_name, experiment_id=record.experiment_id,
            quality_metric=self.quality_metric, quality=self.quality, energy_kwh=metrics.get(schema.ENERGY_KWH),
            emissions_kg=metrics.get(schema.EMISSIONS_KG), estimated=self.estimated, pareto=pareto,
            compression=Compression.from_run(metrics, record.tags), reason=self.reason, status=record.status,
            start_time_ms=record.start_time_ms, model_name=record.model_name, model_version=record.model_version,
            model_aliases=record.model_aliases, gate=record.version_tags.get(schema.TAG_GATE),
            gate_reasons=record.version_tags.get(schema.TAG_GATE_REASONS),
            energy_per_prediction_j=figures.cost_j, accuracy_per_j=None if self.reason else self.per_kwh,
            latency_ms=values.get("latency_ms"), latency_p95_ms=values.get("latency_p95_ms"),
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
    quality_metric = metric or _metric_key(tags.get(schema.TAG_QUALITY_METRIC))
    energy = metrics.get(schema.ENERGY_KWH)
    quality = metrics.get(quality_metric) if quality_metric else None
    if quality is None and quality_metric and quality_metric == _metric_key(tags.get(schema.TAG_QUALITY_METRIC)):
        quality = metrics.get(schema.QUALITY)  # the callbacks log the value as green/quality
    estimated = _is_true(tags.get(schema.TAG_ESTIMATED))
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
    if not quality_metric:
        return f"no quality metric: pass metric= or tag the run with {schema.TAG_QUALITY_METRIC}"
    if quality is None:
        return f"no quality metric {quality_metric!r}"
    if not math.isfinite(quality):
        return f"quality metric {quality_metric!r} is {quality:g}"
    return None


@functools.lru_cache(maxsize=1024)
def _metric_key(metric: str | None) -> str | None:
    if metric is None:
        return None
    metric = metric.strip()
    if metric.startswith("metrics."):
        metric = metric[len("metrics."):]
    return metric.strip("`") or None


# --- helpers ---------------------------------------------------------------------------------


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


def _is_instance(obj: Any, module: str, name: str) -> bool:
    """``isinstance`` without importing ``module`` (an instance's class is imported already)."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls is not None and isinstance(obj, cls)


@functools.lru_cache(maxsize=64)
def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() == "true"


@functools.lru_cache(maxsize=1024)
def _techniques(tag: str | None) -> tuple[str, ...]:
    parts = (t.strip() for t in (tag or "").split(","))
    return tuple(t for t in parts if t and t.lower() != "none")


def _finite(value: float | None) -> float | None:
    if value is None or math.isfinite(value):
        return value
    return None


def _f(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _version_key(version: str | None) -> int:
    try:
        return int(version or 0)
    except ValueError:
        return 0


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"
