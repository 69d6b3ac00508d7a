"""How ranking reads single values a run logged: metric keys, true/false tags, finite numbers.

Shared by scoring by training (:mod:`mlflow_green.ranking.core`) and by inference
(:mod:`mlflow_green.ranking.inference_score`), so that both read a tag and explain an unusable
quality the same way. Pure (no MLflow).

Example:
    >>> metric_key(" metrics.`val_accuracy` "), is_true("True"), finite_or_none(float("nan"))
    ('val_accuracy', True, None)
    >>> quality_reason("val_accuracy", None)
    "no quality metric 'val_accuracy'"
"""

from __future__ import annotations

import functools
import math

from mlflow_green.record import schema


@functools.lru_cache(maxsize=1024)
def metric_key(metric: str | None) -> str | None:
    """A metric name as given (``metric=``, a ``green.quality_metric`` tag) as a metric key.

    Surrounding space, a ``metrics.`` prefix (MLflow's search syntax) and backquotes are dropped;
    nothing left is None.
    """
    if metric is None:
        return None
    metric = metric.strip()
    if metric.startswith("metrics."):
        metric = metric[len("metrics."):]
    return metric.strip("`") or None


@functools.lru_cache(maxsize=64)
def is_true(value: str | None) -> bool:
    """A ``true``/``false`` tag (``green.estimated``...): true only when it says so."""
    return value is not None and value.strip().lower() == "true"


def finite_or_none(value: float | None) -> float | None:
    """``value``, or None when it is NaN or infinite (JSON has neither)."""
    if value is None or math.isfinite(value):
        return value
    return None


def quality_reason(quality_metric: str | None, quality: float | None) -> str | None:
    """Why a row's quality cannot be ranked (no metric named, none logged, not finite), or None."""
    if not quality_metric:
        return f"no quality metric: pass metric= or tag the run with {schema.TAG_QUALITY_METRIC}"
    if quality is None:
        return f"no quality metric {quality_metric!r}"
    if not math.isfinite(quality):
        return f"quality metric {quality_metric!r} is {quality:g}"
    return None
