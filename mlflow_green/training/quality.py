"""Quality per kWh and achieved FLOP per joule: the efficiency figures of a training.

Example:
    >>> resolve_quality_metric(None, {"loss": 0.3, "val_acc": 0.9})
    'val_acc'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mlflow_green.record import schema

TRAINING_FLOPS_PER_FORWARD = 3.0
"""Training FLOPs ≈ 3 × forward FLOPs per sample (forward + backward, the usual estimate)."""


def finite_numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers among ``metrics`` (tensors and numpy scalars read with ``.item()``).

    Example:
        >>> finite_numbers({"eval_loss": 0.5, "epoch": 1, "note": "x", "bad": float("nan")})
        {'eval_loss': 0.5, 'epoch': 1.0}
    """
    out: dict[str, float] = {}
    for key, value in dict(metrics).items():
        try:
            number = float(value.item() if hasattr(value, "item") else value)
        except (TypeError, ValueError, RuntimeError):
            continue
        if math.isfinite(number):
            out[str(key)] = number
    return out


def resolve_quality_metric(requested: str | None, logs: Mapping[str, Any], *, validated: bool = False) -> str | None:
    """The quality metric to use from epoch ``logs``.

    ``requested`` if given (None when absent from ``logs``); otherwise ``val_accuracy``, then
    the first validation metric (``val_*``, ``val/*``, ``valid*``) containing ``acc``, then ``accuracy``,
    then any metric containing ``acc`` (loss-like metrics are never chosen automatically).
    ``validated``: the fit validates (in some epochs: Keras's ``validation_freq``, Lightning's
    ``check_val_every_n_epoch``) — only validation metrics are chosen, so that an epoch without
    validation does not put the training accuracy into the same series.

    Example:
        >>> resolve_quality_metric(None, {"loss": 0.3, "val_acc": 0.9})
        'val_acc'
        >>> resolve_quality_metric(None, {"loss": 0.3, "accuracy": 0.8}, validated=True) is None
        True
    """
    if requested:
        return requested if requested in logs else None
    names = [str(k) for k in logs if not str(k).startswith(schema.METRIC_PREFIX)]
    for candidate in ("val_accuracy",):
        if candidate in names:
            return candidate
    for name in names:
        if name.startswith("val") and "acc" in name:
            return name
    if validated:
        return None
    if "accuracy" in names:
        return "accuracy"
    return next((name for name in names if "acc" in name), None)


def quality_from_logs(requested: str | None, logs: Mapping[str, Any], *, validated: bool = False) -> tuple[str, float] | None:
    """``(name, value)`` of the quality metric in ``logs``, None if absent or not a finite number
    (``validated``: see :func:`resolve_quality_metric`).

    Example:
        >>> quality_from_logs(None, {"val_accuracy": 0.91})
        ('val_accuracy', 0.91)
    """
    name = resolve_quality_metric(requested, logs, validated=validated)
    if name is None:
        return None
    try:
        value = float(logs[name])
    except (TypeError, ValueError):
        return None
    return (name, value) if math.isfinite(value) else None


def training_flops(forward_flops_per_sample: float, samples: Mapping[str, int]) -> float:
    """FLOPs of a training: 3× forward per training sample, 1× per validation sample.

    Example:
        >>> training_flops(100.0, {"train": 10, "validation": 5})
        3500.0
    """
    train = TRAINING_FLOPS_PER_FORWARD * forward_flops_per_sample * samples.get("train", 0)
    return train + forward_flops_per_sample * samples.get("validation", 0)
