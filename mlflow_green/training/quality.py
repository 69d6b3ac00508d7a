"""Quality per kWh and achieved FLOP per joule: the efficiency figures of a training.

Example:
    >>> resolve_quality_metric(None, {"loss": 0.3, "val_acc": 0.9})
    'val_acc'
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from mlflow_green.record import schema

TRAINING_FLOPS_PER_FORWARD = 3.0
"""Training FLOPs ≈ 3 × forward FLOPs per sample (forward + backward, the usual estimate)."""


def finite_number(value: Any) -> float | None:
    """``value`` as a float if it is a finite number (a tensor or numpy scalar read with ``.item()``), else None.

    Example:
        >>> finite_number(1), finite_number(float("nan")), finite_number("x")
        (1.0, None, None)
    """
    try:
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return number if math.isfinite(number) else None


def finite_numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers among ``metrics`` (see :func:`finite_number`).

    Example:
        >>> finite_numbers({"eval_loss": 0.5, "epoch": 1, "note": "x", "bad": float("nan")})
        {'eval_loss': 0.5, 'epoch': 1.0}
    """
    out: dict[str, float] = {}
    for key, value in dict(metrics).items():
        number = finite_number(value)
        if number is not None:
            out[str(key)] = number
    return out


def quality_candidates(requested: str | None, names: Collection[str], *, validated: bool = False) -> Iterator[str]:
    """The names that may be the quality metric, best first (see :func:`resolve_quality_metric`).

    Example:
        >>> list(quality_candidates(None, ["loss", "acc", "val_acc"]))
        ['val_acc', 'acc']
    """
    if requested:
        if requested in names:
            yield requested
        return
    names = [name for name in names if not name.startswith(schema.METRIC_PREFIX)]
    ordered = [*(["val_accuracy"] if "val_accuracy" in names else []), *(n for n in names if n.startswith("val") and "acc" in n)]
    if not validated:
        ordered += [*(["accuracy"] if "accuracy" in names else []), *(n for n in names if "acc" in n)]
    yield from dict.fromkeys(ordered)  # each once, best first


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
    return next(quality_candidates(requested, [str(k) for k in logs], validated=validated), None)


def quality_from_logs(requested: str | None, logs: Mapping[str, Any], *, validated: bool = False) -> tuple[str, float] | None:
    """``(name, value)`` of the quality metric among the finite numbers of ``logs`` (tensors read with ``.item()``,
    only the candidates' — best first, as :func:`resolve_quality_metric` orders them), None if there is none.

    Example:
        >>> quality_from_logs(None, {"val_accuracy": float("nan"), "val_acc": 0.91, "accuracy": 0.8})
        ('val_acc', 0.91)
    """
    values = {str(k): v for k, v in logs.items()}
    for name in quality_candidates(requested, list(values), validated=validated):
        value = finite_number(values[name])
        if value is not None:
            return name, value
    return None


def training_flops(forward_flops_per_sample: float, samples: Mapping[str, int]) -> float:
    """FLOPs of a training: 3× forward per training sample, 1× per validation sample.

    Example:
        >>> training_flops(100.0, {"train": 10, "validation": 5})
        3500.0
    """
    train = TRAINING_FLOPS_PER_FORWARD * forward_flops_per_sample * samples.get("train", 0)
    return train + forward_flops_per_sample * samples.get("validation", 0)
