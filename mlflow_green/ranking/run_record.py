"""What ranking reads from one run: :class:`RunRecord` (its latest metrics and tags) and the
:class:`Compression` summary of its model.

Pure (no MLflow): the stores (:mod:`mlflow_green.ranking.store_runs`, the SQL fast path) build
the records, :mod:`mlflow_green.ranking.core` ranks them.

Example:
    >>> record = RunRecord("0a1b", "pruned", "1", {"green/model_params": 151306.0, "green/model_sparsity": 0.8},
    ...                    {"green.compression": "pruned"})
    >>> Compression.from_run(record.metrics, record.tags).summary
    'pruned · 151k params · 80% sparse'
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow_green.ranking.run_values import finite_or_none
from mlflow_green.record import schema


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
            finite_or_none(get(schema.MODEL_PARAMS)),
            finite_or_none(get(schema.MODEL_PARAMS_UNIQUE)),
            finite_or_none(get(schema.MODEL_SPARSITY)),
            finite_or_none(get(schema.MODEL_WEIGHT_BITS)),
            finite_or_none(get(schema.MODEL_SIZE_BYTES)),
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


@functools.lru_cache(maxsize=1024)
def _techniques(tag: str | None) -> tuple[str, ...]:
    parts = (t.strip() for t in (tag or "").split(","))
    return tuple(t for t in parts if t and t.lower() != "none")


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"
