"""Frozen results of an inference measurement: one :class:`InferenceResult` per batch size.

Example:
    >>> from mlflow_green.measure.readings import DeviceEnergy, Measurement
    >>> cpu = DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 20.0, 2.0, scope="process", share="cpu-time")
    >>> r = InferenceResult(batch_size=32, predictions=6400, batches=200, duration_s=2.0,
    ...                     measurement=Measurement(2.0, (cpu,)), latency_p50_ms=9.5, latency_p95_ms=11.0)
    >>> r.energy_per_prediction_j, r.power_w, r.throughput_per_s, r.provenance, r.scope
    (0.003125, 10.0, 3200.0, 'counter', 'cpu:process')
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlflow_green.measure.readings import Measurement, Provenance


@dataclass(frozen=True)
class InferenceResult:
    """What serving ``predictions`` predictions in batches of ``batch_size`` cost, warm-up excluded.

    Attributes:
        batch_size: Rows per call.
        predictions: Rows predicted inside the window (``batches`` × ``batch_size``).
        batches: Calls inside the window.
        duration_s: Seconds from the first call to the end of the last one.
        measurement: Energy of every device over the window, with provenance and scope.
        latency_p50_ms: Median time of one call (one batch), in milliseconds.
        latency_p95_ms: 95th percentile of the time of one call, in milliseconds.
        latency_mean_ms: Mean time of one call, in milliseconds.
        window_s: The window length asked for (``min_duration_s``, or ten counter update periods).

    Example:
        >>> InferenceResult(1, 0, 0, 0.0, Measurement(0.0)).energy_per_prediction_j
        nan
    """

    batch_size: int
    predictions: int
    batches: int
    duration_s: float
    measurement: Measurement
    latency_p50_ms: float = math.nan
    latency_p95_ms: float = math.nan
    latency_mean_ms: float = math.nan
    window_s: float = 0.0

    @property
    def energy_j(self) -> float:
        """Energy of every device over the window, in joules."""
        return self.measurement.energy_j

    @property
    def energy_per_prediction_j(self) -> float:
        """Joules per prediction (per row), NaN when nothing was predicted."""
        return self.energy_j / self.predictions if self.predictions else math.nan

    @property
    def power_w(self) -> float:
        """Mean power over the window, in watts."""
        return self.measurement.power_w

    @property
    def throughput_per_s(self) -> float:
        """Predictions per second over the window."""
        return self.predictions / self.duration_s if self.duration_s > 0 else math.nan

    @property
    def provenance(self) -> Provenance:
        """The weakest provenance of any device: ``counter``, ``sampled`` or ``estimate``."""
        return self.measurement.provenance

    @property
    def estimated(self) -> bool:
        """True if any device's energy is an estimate."""
        return self.measurement.estimated

    @property
    def scope(self) -> str:
        """Whose share each component is, as the ``green.scope`` tag says it (``cpu:process,ram:process``)."""
        return self.measurement.scope_tag()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, as in ``green/inference_report.json`` (NaN becomes null)."""
        return {
            "batch_size": self.batch_size,
            "predictions": self.predictions,
            "batches": self.batches,
            "duration_s": self.duration_s,
            "window_s": self.window_s,
            "energy_j": self.energy_j,
            "energy_per_prediction_j": _finite(self.energy_per_prediction_j),
            "power_w": self.power_w,
            "throughput_per_s": _finite(self.throughput_per_s),
            "latency_p50_ms": _finite(self.latency_p50_ms),
            "latency_p95_ms": _finite(self.latency_p95_ms),
            "latency_mean_ms": _finite(self.latency_mean_ms),
            "provenance": self.provenance,
            "estimated": self.estimated,
            "scope": self.scope,
            "measurement": self.measurement.to_dict(),
        }


@dataclass(frozen=True)
class InferenceReport:
    """Every batch size's :class:`InferenceResult`, and how they were measured.

    Iterating yields the results in the order measured; ``report[32]`` is batch size 32's.

    Attributes:
        results: One result per batch size, in the order given.
        model: What was measured (``Keras model 'baseline'``, ``torch module Sequential on cpu``).
        rows: Rows of the data given.
        meters: The ``green.meters`` tag: which meter measured each component.
        faults: Meter faults during the measurement (a meter that failed over).
        warmup_s: Seconds of un-measured calls before each window.
        min_duration_s: The shortest window asked for.
        update_period_s: The slowest counter's update period, when the meters say it (else None).
        config: The tracker's configuration (region, PUE, scope, meters).
        started_at_unix_s: When the measurement began.

    Example:
        >>> report = InferenceReport(results=(InferenceResult(1, 10, 10, 1.0, Measurement(1.0)),
        ...                                   InferenceResult(32, 320, 10, 1.0, Measurement(1.0))))
        >>> report.headline.batch_size, [r.batch_size for r in report], report[1].predictions
        (32, [1, 32], 10)
    """

    results: tuple[InferenceResult, ...]
    model: str = ""
    rows: int = 0
    meters: str = ""
    faults: tuple[str, ...] = ()
    warmup_s: float = 0.0
    min_duration_s: float = 0.0
    update_period_s: float | None = None
    config: dict[str, Any] = field(default_factory=dict, compare=False)
    started_at_unix_s: float | None = None

    @property
    def headline(self) -> InferenceResult:
        """The largest batch size's result (the latest value MLflow shows for each metric)."""
        return max(self.results, key=lambda r: r.batch_size)

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The batch sizes measured, in order."""
        return tuple(r.batch_size for r in self.results)

    @property
    def estimated(self) -> bool:
        """True if any batch size's energy is (partly) an estimate."""
        return any(r.estimated for r in self.results)

    @property
    def scope(self) -> str:
        """The ``green.scope`` tag of the headline window."""
        return self.headline.scope

    def __getitem__(self, batch_size: int) -> InferenceResult:
        for result in self.results:
            if result.batch_size == batch_size:
                return result
        raise KeyError(f"batch size {batch_size} was not measured; measured: {list(self.batch_sizes)}")

    def __iter__(self) -> Iterator[InferenceResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the body of ``green/inference_report.json`` (without the envelope)."""
        return {
            "model": self.model,
            "rows": self.rows,
            "batch_sizes": list(self.batch_sizes),
            "headline_batch_size": self.headline.batch_size,
            "warmup_s": self.warmup_s,
            "min_duration_s": self.min_duration_s,
            "update_period_s": self.update_period_s,
            "estimated": self.estimated,
            "scope": self.scope,
            "meters": {"tag": self.meters, "faults": list(self.faults)},
            "config": dict(self.config),
            "results": [r.to_dict() for r in self.results],
        }


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1) with linear interpolation; NaN for no values.

    Example:
        >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([5.0], 0.95), percentile([], 0.5)
        (2.5, 5.0, nan)
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
