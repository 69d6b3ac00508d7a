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
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import gc
import json
import logging
import math
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mlflow_green import schema
from mlflow_green.errors import NotFoundError, RankRequestError

if TYPE_CHECKING:
    import pandas
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

API_PATH = "/green/api"
"""Where ``mlflow server --app-name green`` serves the ranking JSON API (under the static prefix)."""

TIE_REL_TOL = 1e-9
"""Relative tolerance under which two accuracies per kWh tie (share a rank)."""

_ENERGY_KEYS = (schema.ENERGY_KWH, schema.EMISSIONS_KG, schema.QUALITY)
_COMPRESSION_KEYS = (
    schema.MODEL_PARAMS,
    schema.MODEL_PARAMS_UNIQUE,
    schema.MODEL_SPARSITY,
    schema.MODEL_WEIGHT_BITS,
    schema.MODEL_SIZE_BYTES,
)
_RUN_TAG_KEYS = (schema.TAG_QUALITY_METRIC, schema.TAG_ESTIMATED, schema.TAG_COMPRESSION)
_PAGE_RUNS = 50_000
_PAGE_VERSIONS = 10_000
_MAX_VERSIONS_SCANNED = 50_000


# --- values ------------------------------------------------------------------------------------


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
        return sorted((r for r in self.rows if r.pareto), key=lambda r: (r.energy_kwh or 0.0, -(r.quality or 0.0)))

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


# --- the pure core -----------------------------------------------------------------------------


def rank_records(
    records: Iterable[RunRecord], *, metric: str | None = None, measured_only: bool = False
) -> tuple[RankedRow, ...]:
    """Rank runs by quality per kWh: ranked rows best first, then unranked rows with a reason.

    Args:
        records: The runs (or model versions' source runs).
        metric: Quality metric for every run (default: each run's ``green.quality_metric`` tag).
        measured_only: Leave out runs whose energy is an estimate.

    Returns:
        The rows; see the module docstring for the rules.
    """
    metric = _metric_key(metric)
    ranked: list[_Scored] = []
    unranked: list[_Scored] = []
    for record in records:
        scored = _score(record, metric)
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

    def row(self, rank: int | None, pareto: bool) -> RankedRow:
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


# --- fetching ------------------------------------------------------------------------------------


def rank(
    experiments: str | int | Sequence[str | int] | None = None,
    *,
    model: str | None = None,
    metric: str | None = None,
    filter_string: str | None = None,
    measured_only: bool = False,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
) -> Ranking:
    """Rank the runs of experiments, or the versions of a registered model, by quality per kWh.

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

    Returns:
        The :class:`Ranking`.

    Raises:
        NotFoundError: An experiment or model does not exist (the message lists close matches).
        RankRequestError: Neither or both of experiments and model, or an invalid filter.

    Example::

        ranking = mlflow_green.rank("green-digits-keras", metric="test_accuracy")
        for row in ranking.ranked:
            print(row.rank, row.run_name, row.accuracy_per_kwh, "*" if row.pareto else "")
    """
    from mlflow import MlflowClient

    refs = _check_request(experiments, model, filter_string)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    tracking = _tracking_store(client)
    if _is_rest_store(tracking):
        with gc_paused():
            remote = _rank_via_api(tracking, refs, model, metric, filter_string, measured_only)
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
    )


def rank_client(
    client: MlflowClient,
    experiments: str | int | Sequence[str | int] | None = None,
    *,
    model: str | None = None,
    metric: str | None = None,
    filter_string: str | None = None,
    measured_only: bool = False,
) -> Ranking:
    """:func:`rank` through an ``MlflowClient``'s public API only (any store or server)."""
    refs = _check_request(experiments, model, filter_string)
    return rank_stores(
        _ClientTracking(client), _ClientRegistry(client),
        experiments=refs, model=model, metric=metric, filter_string=filter_string, measured_only=measured_only,
    )


def rank_stores(
    tracking: Any,
    registry: Any,
    *,
    experiments: Sequence[str] = (),
    model: str | None = None,
    metric: str | None = None,
    filter_string: str | None = None,
    measured_only: bool = False,
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
    """
    with gc_paused():
        return _rank_stores(tracking, registry, experiments, model, metric, filter_string, measured_only)


def _rank_stores(tracking: Any, registry: Any, experiments: Sequence[str], model: str | None, metric: str | None,
                 filter_string: str | None, measured_only: bool) -> Ranking:
    metric = _metric_key(metric)
    if model is not None:
        records, model_name = _model_records(tracking, registry, model, metric)
        rows = rank_records(records, metric=metric, measured_only=measured_only)
        return Ranking(rows=rows, metric=metric, model_name=model_name, measured_only=measured_only)
    resolved = resolve_experiments(tracking, experiments)
    ids = [experiment_id for experiment_id, _ in resolved]
    records = _run_records(tracking, ids, metric, filter_string)
    records = _attach_registered_versions(records, registry)
    rows = rank_records(records, metric=metric, measured_only=measured_only)
    return Ranking(rows=rows, metric=metric, experiments=tuple(resolved), measured_only=measured_only,
                   filter_string=filter_string or None)


def resolve_experiments(tracking: Any, refs: Sequence[str]) -> list[tuple[str, str]]:
    """``(id, name)`` of each experiment, given by name or by id.

    Raises:
        NotFoundError: One does not exist; the message lists close matches.
    """
    from mlflow.exceptions import MlflowException

    resolved: list[tuple[str, str]] = []
    for ref in refs:
        experiment = None
        try:
            experiment = tracking.get_experiment_by_name(ref)
        except MlflowException:
            experiment = None
        if experiment is None and re.fullmatch(r"[\w-]{1,128}", ref):
            try:
                experiment = tracking.get_experiment(ref)
            except MlflowException:
                experiment = None
        if experiment is None:
            names = [e.name for e in _iter_experiments(tracking)]
            raise NotFoundError(_not_found_message("experiment", ref, names, "mlflow experiments search"),
                                kind="experiment", name=ref, suggestions=_close(ref, names))
        if experiment.lifecycle_stage != "active":
            raise NotFoundError(
                f"Experiment {experiment.name!r} (id {experiment.experiment_id}) is deleted. "
                f"Restore it with: mlflow experiments restore --experiment-id {experiment.experiment_id}",
                kind="experiment", name=ref, suggestions=[],
            )
        if experiment.experiment_id not in (i for i, _ in resolved):
            resolved.append((str(experiment.experiment_id), experiment.name))
    return resolved


def list_experiments(tracking: Any) -> list[dict[str, Any]]:
    """Active experiments, most recently updated first, as ``{"id", "name", "last_update_time"}``."""
    experiments = sorted(_iter_experiments(tracking), key=lambda e: -(e.last_update_time or 0))
    return [{"id": str(e.experiment_id), "name": e.name, "last_update_time": e.last_update_time} for e in experiments]


def list_metric_keys(tracking: Any, experiments: Sequence[str]) -> list[str]:
    """The metric keys logged by the experiments' active runs that could be quality metrics
    (all but ``green/`` and MLflow's ``system/`` metrics), sorted.

    Raises:
        NotFoundError: An experiment does not exist.
    """
    ids = [experiment_id for experiment_id, _ in resolve_experiments(tracking, experiments)]
    keys: set[str] = set()
    if _is_sql_store(tracking):
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlRun
        from sqlalchemy import select

        runs_t, latest_t = SqlRun.__table__, SqlLatestMetric.__table__
        selected = select(runs_t.c.run_uuid).where(
            runs_t.c.experiment_id.in_([int(i) if i.isdigit() else i for i in ids]),
            runs_t.c.lifecycle_stage == "active",
        )
        with gc_paused(), tracking.ManagedSessionMaker() as session:
            query = select(latest_t.c.key).where(latest_t.c.run_uuid.in_(selected)).distinct()
            keys.update(session.connection().execute(query).scalars().all())
    else:
        for record in _search_records(tracking, ids, None):
            keys.update(record.metrics)
    return sorted(k for k in keys if not k.startswith((schema.METRIC_PREFIX, "system/")))


def list_models(registry: Any) -> list[dict[str, Any]]:
    """Registered models by name, as ``{"name", "aliases", "latest_version", "description"}``."""
    models = []
    token = None
    while True:
        page = registry.search_registered_models(max_results=1000, page_token=token)
        for m in page:
            latest = max((int(v.version) for v in (m.latest_versions or [])), default=None)
            models.append({
                "name": m.name,
                "aliases": {a: str(v) for a, v in (getattr(m, "aliases", None) or {}).items()},
                "latest_version": None if latest is None else str(latest),
                "description": m.description or "",
            })
        token = getattr(page, "token", None)
        if not token:
            break
    return sorted(models, key=lambda m: m["name"])


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
    return refs


@functools.lru_cache(maxsize=1024)
def _metric_key(metric: str | None) -> str | None:
    if metric is None:
        return None
    metric = metric.strip()
    if metric.startswith("metrics."):
        metric = metric[len("metrics."):]
    return metric.strip("`") or None


def _run_records(
    tracking: Any, experiment_ids: Sequence[str], metric: str | None, filter_string: str | None
) -> list[RunRecord]:
    if _is_sql_store(tracking):
        try:
            return _sql_records(tracking, experiment_ids=experiment_ids, metric=metric, filter_string=filter_string)
        except _SqlPathUnavailable as exc:
            logger.info("mlflow-green: SQL fast path unavailable (%s); using the store's search API", exc)
    return _search_records(tracking, experiment_ids, filter_string)


def _search_records(tracking: Any, experiment_ids: Sequence[str], filter_string: str | None) -> list[RunRecord]:
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    records: list[RunRecord] = []
    token = None
    while True:
        try:
            page = tracking.search_runs(
                experiment_ids=list(experiment_ids), filter_string=filter_string or "",
                run_view_type=ViewType.ACTIVE_ONLY, max_results=_PAGE_RUNS, page_token=token,
            )
        except MlflowException as exc:
            raise _request_error(exc, filter_string) from exc
        records.extend(_record_from_run(run) for run in page)
        token = getattr(page, "token", None)
        if not token:
            return records


def _record_from_run(run: Any) -> RunRecord:
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


class _SqlPathUnavailable(Exception):
    """This MLflow's SQL store internals differ from what the fast path expects."""


def _is_sql_store(tracking: Any) -> bool:
    return _is_instance(tracking, "mlflow.store.tracking.sqlalchemy_store", "SqlAlchemyStore")


def _is_rest_store(tracking: Any) -> bool:
    return _is_instance(tracking, "mlflow.store.tracking.rest_store", "RestStore")


def _is_instance(obj: Any, module: str, name: str) -> bool:
    """``isinstance`` without importing ``module`` (an instance's class is imported already)."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls is not None and isinstance(obj, cls)


def _sql_records(
    store: Any,
    *,
    experiment_ids: Sequence[str] | None = None,
    run_ids: Sequence[str] | None = None,
    metric: str | None = None,
    filter_string: str | None = None,
) -> list[RunRecord]:
    """Read only the needed columns: the runs, four tags and eight latest metrics per run.

    SQLAlchemy Core on the session's connection (no ORM objects). Tags and metrics are joined
    runs-first, so each run's rows are read together through the ``run_uuid`` indexes.
    """
    try:
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlRun, SqlTag
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
        from sqlalchemy import select
    except ImportError as exc:  # pragma: no cover - depends on the MLflow version
        raise _SqlPathUnavailable(str(exc)) from exc
    from mlflow.exceptions import MlflowException

    runs_t, tags_t, latest_t = SqlRun.__table__, SqlTag.__table__, SqlLatestMetric.__table__
    try:
        with store.ManagedSessionMaker() as session:
            query = select(runs_t.c.run_uuid, runs_t.c.name, runs_t.c.experiment_id, runs_t.c.status,
                           runs_t.c.start_time)
            if experiment_ids is not None:
                ids = [int(i) if str(i).isdigit() else i for i in experiment_ids]
                filter_ids = getattr(store, "_filter_experiment_ids", None)
                if filter_ids is not None:  # the hook workspace-aware stores use to hide other workspaces
                    ids = list(filter_ids(session, ids))
                query = query.where(runs_t.c.experiment_id.in_(ids), runs_t.c.lifecycle_stage == "active")
            if run_ids is not None:
                query = query.where(runs_t.c.run_uuid.in_(list(run_ids)))
            if filter_string:
                query = _sql_filter(store, session, query, filter_string)
            conn = session.connection()
            runs = conn.execute(query).all()
            # SQLite plans `key IN (...)` through the (key, run_uuid) index, which reads the rows in
            # key order, all over the file; coalesce() hides that index, so it reads each run's rows
            # together through the run_uuid index (2-3x faster on 10 000 runs).
            sqlite = conn.dialect.name == "sqlite"
            selected = query.with_only_columns(runs_t.c.run_uuid).subquery()  # same joins and conditions

            tags: dict[str, dict[str, str]] = {}
            tag_query = (
                select(tags_t.c.run_uuid, tags_t.c.key, tags_t.c.value)
                .select_from(selected.join(tags_t, tags_t.c.run_uuid == selected.c.run_uuid))
                .where(_unindexed(tags_t.c.key, sqlite).in_((*_RUN_TAG_KEYS, MLFLOW_RUN_NAME)))
            )
            for run_uuid, key, value in conn.execute(tag_query).all():
                tags.setdefault(run_uuid, {})[key] = value
            metric_keys = {*_ENERGY_KEYS, *_COMPRESSION_KEYS}
            if metric:
                metric_keys.add(metric)
            else:
                metric_keys.update(
                    t[schema.TAG_QUALITY_METRIC] for t in tags.values() if t.get(schema.TAG_QUALITY_METRIC)
                )
            metrics: dict[str, dict[str, float]] = {}
            metric_query = (
                select(latest_t.c.run_uuid, latest_t.c.key, latest_t.c.value, latest_t.c.is_nan)
                .select_from(selected.join(latest_t, latest_t.c.run_uuid == selected.c.run_uuid))
                .where(_unindexed(latest_t.c.key, sqlite).in_(sorted(metric_keys)))
            )
            for run_uuid, key, value, is_nan in conn.execute(metric_query).all():
                metrics.setdefault(run_uuid, {})[key] = math.nan if is_nan else float(value)
    except MlflowException as exc:  # the session maker wraps every error into an MlflowException
        if isinstance(exc.__cause__, (RankRequestError, _SqlPathUnavailable)):
            raise exc.__cause__ from None
        raise
    return [
        RunRecord(
            run_id=run_uuid,
            run_name=name or tags.get(run_uuid, {}).get(MLFLOW_RUN_NAME) or run_uuid[:8],
            experiment_id=str(experiment_id),
            metrics=metrics.get(run_uuid, {}),
            tags=tags.get(run_uuid, {}),
            status=status or "",
            start_time_ms=start_time,
        )
        for run_uuid, name, experiment_id, status, start_time in runs
    ]


def _unindexed(column: Any, sqlite: bool) -> Any:
    from sqlalchemy import func

    return func.coalesce(column, "") if sqlite else column


def _sql_filter(store: Any, session: Any, query: Any, filter_string: str) -> Any:
    from mlflow.exceptions import MlflowException
    from mlflow.utils.search_utils import SearchUtils

    try:
        from mlflow.store.tracking.dbmodels.models import SqlRun
        from mlflow.store.tracking.sqlalchemy_store import _get_sqlalchemy_filter_clauses
    except ImportError as exc:  # pragma: no cover - depends on the MLflow version
        raise _SqlPathUnavailable(str(exc)) from exc
    try:
        parsed = SearchUtils.parse_search_filter(filter_string)
    except MlflowException as exc:
        raise _request_error(exc, filter_string) from exc
    try:
        attribute_filters, non_attribute_filters, dataset_filters = _get_sqlalchemy_filter_clauses(
            parsed, session, store._get_dialect()
        )
    except MlflowException as exc:
        raise _request_error(exc, filter_string) from exc
    except (TypeError, ValueError, AttributeError) as exc:  # pragma: no cover - internals changed
        raise _SqlPathUnavailable(f"filter clauses: {exc}") from exc
    for clause in non_attribute_filters:
        query = query.join(clause)
    for clause in dataset_filters:
        query = query.join(clause, SqlRun.run_uuid == clause.c.destination_id)
    return query.where(*attribute_filters).distinct()


def _request_error(exc: Exception, filter_string: str | None) -> Exception:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException) and exc.error_code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
        return RankRequestError(
            f"Invalid filter {filter_string!r}: {exc.message} "
            "(MLflow search syntax, e.g. \"params.epochs = '8' and metrics.val_accuracy > 0.9\")."
        )
    return exc


def _model_records(tracking: Any, registry: Any, name: str, metric: str | None) -> tuple[list[RunRecord], str]:
    from mlflow.exceptions import MlflowException

    if registry is None:
        raise RankRequestError("This tracking store has no model registry.")
    try:
        registered = registry.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        names = [m["name"] for m in list_models(registry)]
        raise NotFoundError(_not_found_message("registered model", name, names, "mlflow models search"),
                            kind="model", name=name, suggestions=_close(name, names)) from exc
    versions = _model_versions(registry, registered.name)
    aliases_by_version: dict[str, list[str]] = {}
    for alias, version in (getattr(registered, "aliases", None) or {}).items():
        aliases_by_version.setdefault(str(version), []).append(alias)
    run_ids = {v.run_id for v in versions if v.run_id}
    runs = _records_by_run_id(tracking, run_ids, metric)
    records = []
    for version in versions:
        source = runs.get(version.run_id) if version.run_id else None
        own = set(getattr(version, "aliases", None) or ())
        aliases = tuple(sorted(own | set(aliases_by_version.get(str(version.version), ()))))
        common = {
            "model_name": registered.name,
            "model_version": str(version.version),
            "model_aliases": aliases,
            "version_tags": dict(version.tags or {}),
        }
        if source is None:
            missing = f"source run {version.run_id} not found" if version.run_id else "version has no source run"
            records.append(RunRecord(run_id=version.run_id or "", run_name=f"version {version.version}",
                                     experiment_id="", metrics={}, tags={}, missing=missing, **common))
        else:
            records.append(replace(source, **common))
    return records, registered.name


def _model_versions(registry: Any, name: str) -> list[Any]:
    quote = '"' if "'" in name else "'"
    versions: list[Any] = []
    token = None
    while True:
        page = registry.search_model_versions(
            filter_string=f"name={quote}{name}{quote}", max_results=_PAGE_VERSIONS, page_token=token
        )
        versions.extend(v for v in page if v.name == name)
        token = getattr(page, "token", None)
        if not token:
            return versions


def _records_by_run_id(tracking: Any, run_ids: Iterable[str], metric: str | None) -> dict[str, RunRecord]:
    from mlflow.exceptions import MlflowException

    run_ids = sorted(set(run_ids))
    if not run_ids:
        return {}
    if _is_sql_store(tracking):
        try:
            return {r.run_id: r for r in _sql_records(tracking, run_ids=run_ids, metric=metric)}
        except _SqlPathUnavailable as exc:
            logger.info("mlflow-green: SQL fast path unavailable (%s)", exc)
    records = {}
    for run_id in run_ids:
        try:
            records[run_id] = _record_from_run(tracking.get_run(run_id))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    return records


def _attach_registered_versions(records: list[RunRecord], registry: Any) -> list[RunRecord]:
    """Name each run's latest registered model version (skipped for very large registries)."""
    if registry is None or not records:
        return records
    latest: dict[str, Any] = {}
    token, scanned = None, 0
    try:
        while True:
            page = registry.search_model_versions(max_results=_PAGE_VERSIONS, page_token=token)
            for version in page:
                scanned += 1
                if not version.run_id:
                    continue
                known = latest.get(version.run_id)
                if known is None or (version.creation_timestamp or 0) > (known.creation_timestamp or 0):
                    latest[version.run_id] = version
            token = getattr(page, "token", None)
            if not token or scanned >= _MAX_VERSIONS_SCANNED:
                break
    except Exception as exc:  # the registry is optional for a run leaderboard
        logger.info("mlflow-green: registry not read (%s)", exc)
        return records
    wanted = {record.run_id for record in records}
    latest = {run_id: version for run_id, version in latest.items() if run_id in wanted}
    if not latest:
        return records
    aliases = _aliases_by_version(registry, {version.name for version in latest.values()})
    out = []
    for record in records:
        version = latest.get(record.run_id)
        if version is None:
            out.append(record)
        else:
            out.append(replace(record, model_name=version.name, model_version=str(version.version),
                               model_aliases=aliases.get((version.name, str(version.version)), ()),
                               version_tags=dict(version.tags or {})))
    return out


def _aliases_by_version(registry: Any, names: Iterable[str]) -> dict[tuple[str, str], tuple[str, ...]]:
    """``(model, version) -> aliases`` (model-version search results do not carry aliases)."""
    found: dict[tuple[str, str], list[str]] = {}
    for name in names:
        try:
            model = registry.get_registered_model(name)
        except Exception as exc:  # optional decoration of a run leaderboard
            logger.info("mlflow-green: aliases of %s not read (%s)", name, exc)
            continue
        for alias, version in (getattr(model, "aliases", None) or {}).items():
            found.setdefault((name, str(version)), []).append(alias)
    return {key: tuple(sorted(values)) for key, values in found.items()}


def _iter_experiments(tracking: Any) -> Iterator[Any]:
    from mlflow.entities import ViewType

    token = None
    while True:
        page = tracking.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def _close(ref: str, names: Sequence[str]) -> list[str]:
    lowered = {n.lower(): n for n in names}
    close = [lowered[c] for c in difflib.get_close_matches(ref.lower(), list(lowered), n=5, cutoff=0.5)]
    close += [n for n in names if ref.lower() in n.lower() and n not in close]
    return close[:5]


def _not_found_message(kind: str, ref: str, names: Sequence[str], command: str) -> str:
    close = _close(ref, names)
    if close:
        hint = "Did you mean: " + ", ".join(repr(c) for c in close) + "?"
    elif names:
        hint = f"{len(names)} exist; list them with: {command}"
    else:
        hint = "There is none on this tracking server (check MLFLOW_TRACKING_URI)."
    return f"No {kind} named {ref!r}. {hint}"


# --- store access --------------------------------------------------------------------------------


def _tracking_store(client: MlflowClient) -> Any:
    try:
        return client._tracking_client.store
    except Exception:  # private API: fall back to the client's public methods
        return None


def _registry_store(client: MlflowClient) -> Any:
    try:
        return client._get_registry_client().store
    except Exception:
        return _ClientRegistry(client)


class _ClientTracking:
    """The tracking-store methods ranking uses, over an ``MlflowClient``'s public API."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    def get_experiment_by_name(self, name: str) -> Any:
        return self.client.get_experiment_by_name(name)

    def get_experiment(self, experiment_id: str) -> Any:
        return self.client.get_experiment(experiment_id)

    def search_experiments(self, *, view_type: Any, max_results: int, page_token: str | None) -> Any:
        return self.client.search_experiments(view_type=view_type, max_results=max_results, page_token=page_token)

    def search_runs(self, *, experiment_ids: list[str], filter_string: str, run_view_type: Any, max_results: int,
                    page_token: str | None) -> Any:
        return self.client.search_runs(experiment_ids, filter_string=filter_string, run_view_type=run_view_type,
                                       max_results=max_results, page_token=page_token)

    def get_run(self, run_id: str) -> Any:
        return self.client.get_run(run_id)


class _ClientRegistry:
    """The registry-store methods ranking uses, over an ``MlflowClient``'s public API."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    def get_registered_model(self, name: str) -> Any:
        return self.client.get_registered_model(name)

    def search_registered_models(self, *, max_results: int, page_token: str | None) -> Any:
        return self.client.search_registered_models(max_results=max_results, page_token=page_token)

    def search_model_versions(self, *, filter_string: str | None = None, max_results: int,
                              page_token: str | None) -> Any:
        return self.client.search_model_versions(filter_string=filter_string, max_results=max_results,
                                                 page_token=page_token)


# --- remote: the server's /green/api ----------------------------------------------------------------

_API_UNAVAILABLE: set[str] = set()


def _rank_via_api(
    store: Any, refs: Sequence[str], model: str | None, metric: str | None, filter_string: str | None,
    measured_only: bool,
) -> Ranking | None:
    """Ask ``mlflow server --app-name green``; ``None`` when the server has no green app."""
    from urllib.parse import quote

    from mlflow.utils.rest_utils import http_request

    creds = store.get_host_creds()
    if creds.host in _API_UNAVAILABLE:
        return None
    params: dict[str, Any] = {"measured_only": "true" if measured_only else "false"}
    if metric:
        params["metric"] = metric
    if model is not None:
        endpoint = f"{API_PATH}/models/{quote(model, safe='')}/rank"
    else:
        endpoint = f"{API_PATH}/rank"
        params["experiment"] = list(refs)
        if filter_string:
            params["filter"] = filter_string
    response = http_request(creds, endpoint, "GET", params=params, max_retries=0)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 200 and isinstance(body, dict) and "rows" in body:
        return Ranking.from_dict(body)
    if isinstance(body, dict) and body.get("type") in ("NotFoundError", "RankRequestError"):
        if body["type"] == "NotFoundError":
            raise NotFoundError(body.get("error", ""), kind=body.get("kind", ""), name=body.get("name", ""),
                                suggestions=body.get("suggestions") or [])
        raise RankRequestError(body.get("error", ""))
    if response.status_code in (404, 405):  # a server without the green app
        _API_UNAVAILABLE.add(creds.host)
        logger.info("mlflow-green: %s has no /green/api; ranking through the MLflow client API", creds.host)
        return None
    detail = body.get("error") if isinstance(body, dict) else response.text[:300]
    message = f"The tracking server answered {response.status_code} to {endpoint}: {detail}"
    if 400 <= response.status_code < 500:
        raise RankRequestError(message)
    from mlflow.exceptions import MlflowException

    raise MlflowException(message)


# --- helpers -----------------------------------------------------------------------------------------


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
