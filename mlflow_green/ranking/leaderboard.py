"""The leaderboard's values: :class:`RankedRow` (one line) and :class:`Ranking` (the whole board),
and their JSON form (the ``/green/api/rank`` response) and pandas form.

Pure (no MLflow): :func:`~mlflow_green.ranking.core.rank_records` makes the rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mlflow_green.ranking.run_record import Compression
from mlflow_green.ranking.run_values import finite_or_none

if TYPE_CHECKING:
    import pandas


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
            "quality": finite_or_none(self.quality),
            "energy_kwh": finite_or_none(self.energy_kwh),
            "emissions_kg": finite_or_none(self.emissions_kg),
            "accuracy_per_kwh": finite_or_none(self.accuracy_per_kwh),
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
            "energy_per_prediction_j": finite_or_none(self.energy_per_prediction_j),
            "accuracy_per_j": finite_or_none(self.accuracy_per_j),
            "latency_ms": finite_or_none(self.latency_ms),
            "latency_p95_ms": finite_or_none(self.latency_p95_ms),
            "throughput_per_s": finite_or_none(self.throughput_per_s),
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
