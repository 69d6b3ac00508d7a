"""The settings of an inference measurement, validated before anything is measured.

:class:`InferenceOptions` holds what :func:`~mlflow_green.inference.measure_inference` and the
``green`` evaluator's ``evaluator_config`` accept. Every check happens at construction: a
non-positive or fractional batch size, a negative warm-up, an unknown ``evaluator_config`` key
raise :class:`~mlflow_green.errors.ConfigError` naming the setting, what was given and what is
accepted.

Example:
    >>> InferenceOptions(batch_sizes=(1, 32)).headline_batch_size
    32
    >>> InferenceOptions(batch_sizes=(0,))
    Traceback (most recent call last):
    ...
    mlflow_green.errors.ConfigError: batch_sizes must be positive integers such as (1, 32), got 0 in (0,)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlflow_green.errors import ConfigError

DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 32)
DEFAULT_WARMUP_S = 1.0
"""Seconds of calls at each batch size before its window opens (graph tracing, caches, allocator)."""
DEFAULT_MIN_DURATION_S = 2.0
"""Shortest measurement window per batch size, unless ten counter update periods are longer."""
UPDATE_PERIODS_PER_WINDOW = 10
"""A window spans at least this many updates of the slowest meter's counter."""
MIN_CALLS_PER_WINDOW = 2
MAX_BATCH_SIZE = 1_000_000
MAX_DURATION_S = 3600.0

MEASURE_KEYS: tuple[str, ...] = (
    "batch_sizes", "warmup_s", "min_duration_s", "meters", "region", "pue", "scope", "sample_interval_s",
)
"""``evaluator_config`` keys that configure the measurement itself."""
EVALUATOR_KEYS: tuple[str, ...] = (*MEASURE_KEYS, "predict_with", "quality_metric", "tag_registered_versions")
"""Every key the ``green`` evaluator accepts in ``evaluator_config``."""


@dataclass(frozen=True)
class InferenceOptions:
    """How to measure: batch sizes, warm-up, window length, and the tracker's settings.

    Args:
        batch_sizes: Batch sizes to measure, each a positive integer, in the order given. The
            largest is the *headline*: MLflow shows a metric's value at its highest step as the
            latest, and the sweep is logged with ``step`` = batch size.
        warmup_s: Seconds of un-measured calls at each batch size before its window (≥ 0).
        min_duration_s: Shortest window per batch size, in seconds (> 0); the window also spans
            at least ten update periods of the slowest counter.
        meters: Meter names or instances, as for :class:`~mlflow_green.EnergyTracker`.
        region: Carbon-intensity region, as for the tracker.
        pue: Power usage effectiveness, as for the tracker.
        scope: ``process`` or ``machine``, as for the tracker.
        sample_interval_s: Power sampling interval for meters without a counter.

    Example:
        >>> InferenceOptions(batch_sizes=[64, 1], warmup_s=0).batch_sizes
        (64, 1)
    """

    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
    warmup_s: float = DEFAULT_WARMUP_S
    min_duration_s: float = DEFAULT_MIN_DURATION_S
    meters: Any = None
    region: str | None = None
    pue: float | None = None
    scope: str | None = None
    sample_interval_s: float | None = None
    tracker_settings: Mapping[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_sizes", check_batch_sizes(self.batch_sizes))
        object.__setattr__(self, "warmup_s", _seconds("warmup_s", self.warmup_s, allow_zero=True))
        object.__setattr__(self, "min_duration_s", _seconds("min_duration_s", self.min_duration_s, allow_zero=False))
        settings = {
            "meters": self.meters,
            "region": self.region,
            "pue": self.pue,
            "scope": self.scope,
            "sample_interval_s": self.sample_interval_s,
        }
        object.__setattr__(self, "tracker_settings", {k: v for k, v in settings.items() if v is not None})

    @property
    def headline_batch_size(self) -> int:
        """The largest batch size: the one whose figures are the latest values MLflow shows."""
        return max(self.batch_sizes)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready view for ``green/inference_report.json``."""
        meters = self.meters
        if meters is not None and not isinstance(meters, str):
            meters = [m if isinstance(m, str) else getattr(m, "name", type(m).__name__) for m in meters]
        return {
            "batch_sizes": list(self.batch_sizes),
            "headline_batch_size": self.headline_batch_size,
            "warmup_s": self.warmup_s,
            "min_duration_s": self.min_duration_s,
            "meters": meters,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, *, allowed: Sequence[str] = EVALUATOR_KEYS) -> InferenceOptions:
        """Options from an ``evaluator_config`` dict; keys outside ``allowed`` are an error.

        Example:
            >>> InferenceOptions.from_config({"batch_sizes": [8], "warmup_s": 0}).batch_sizes
            (8,)
            >>> InferenceOptions.from_config({"batch_size": 8})
            Traceback (most recent call last):
            ...
            mlflow_green.errors.ConfigError: unknown evaluator_config key 'batch_size' for the green evaluator (did you mean 'batch_sizes'?). Valid keys: batch_sizes, warmup_s, min_duration_s, meters, region, pue, scope, sample_interval_s, predict_with, quality_metric, tag_registered_versions
        """
        config = dict(config or {})
        if not all(isinstance(k, str) for k in config):
            raise ConfigError(f"evaluator_config keys must be strings, got {sorted(map(repr, config))}")
        unknown = [k for k in config if k not in allowed]
        if unknown:
            import difflib

            key = unknown[0]
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown evaluator_config key {key!r} for the green evaluator{hint}. Valid keys: {', '.join(allowed)}"
            )
        return cls(**{k: v for k, v in config.items() if k in MEASURE_KEYS})


def check_batch_sizes(value: Any) -> tuple[int, ...]:
    """Positive integer batch sizes, each once, as a tuple.

    Raises:
        ConfigError: Not a non-empty sequence of positive integers, or a batch size listed twice.

    Example:
        >>> check_batch_sizes(8)
        (8,)
        >>> check_batch_sizes([1, -2])
        Traceback (most recent call last):
        ...
        mlflow_green.errors.ConfigError: batch_sizes must be positive integers such as (1, 32), got -2 in [1, -2]
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
        raise ConfigError(f"batch_sizes must be a non-empty list of positive integers such as (1, 32), got {value!r}")
    sizes: list[int] = []
    for size in value:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not 0 < int(size) <= MAX_BATCH_SIZE:
            raise ConfigError(
                f"batch_sizes must be positive integers such as (1, 32), got {size!r} in {value!r}"
                + (f" (at most {MAX_BATCH_SIZE:,})" if isinstance(size, numbers.Integral) and size > MAX_BATCH_SIZE else "")
            )
        if int(size) in sizes:
            raise ConfigError(f"batch_sizes lists {int(size)} twice: {value!r}")
        sizes.append(int(size))
    return tuple(sizes)


def _seconds(name: str, value: Any, *, allow_zero: bool) -> float:
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number of seconds {bound}, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero) or seconds > MAX_DURATION_S:
        raise ConfigError(f"{name} must be a number of seconds {bound} and at most {MAX_DURATION_S:g}, got {value!r}")
    return seconds
