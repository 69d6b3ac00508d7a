"""The quality metric picked from an epoch's logs as the framework hands them over (tensors, numpy scalars, NaN)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlflow_green.training.quality import quality_from_logs, resolve_quality_metric


class Tensor:
    """A framework's scalar: read with ``.item()``, counted."""

    reads = 0

    def __init__(self, value: float) -> None:
        self.value = value

    def item(self) -> float:
        Tensor.reads += 1
        return self.value


@pytest.mark.parametrize(("logs", "validated", "expected"), [
    ({"loss": Tensor(0.3), "val_acc": Tensor(0.9)}, False, ("val_acc", 0.9)),
    ({"val_accuracy": np.float32(0.5), "val_acc": 0.9}, False, ("val_accuracy", 0.5)),
    ({"val_accuracy": float("nan"), "val_acc": Tensor(0.8)}, False, ("val_acc", 0.8)),  # not a number: the next one
    ({"val_acc": "n/a", "accuracy": 0.7}, False, ("accuracy", 0.7)),
    ({"val_acc": float("inf"), "accuracy": 0.7}, True, None),  # a validating fit never takes the training accuracy
    ({"green/accuracy_per_kwh": 5.0, "train_acc": 0.6}, False, ("train_acc", 0.6)),  # never our own figures
    ({1: 0.5, "loss": 0.1}, False, None),
])
def test_the_best_finite_candidate_is_taken(logs: dict[Any, Any], validated: bool, expected: tuple[str, float] | None) -> None:
    found = quality_from_logs(None, logs, validated=validated)
    if expected is None:
        assert found is None
    else:
        assert found is not None and found[0] == expected[0] and found[1] == pytest.approx(expected[1])


def test_only_the_candidates_are_read_and_a_requested_one_alone() -> None:
    Tensor.reads = 0
    logs = {f"loss_{i}": Tensor(float(i)) for i in range(20)} | {"val_acc": Tensor(0.9)}
    assert quality_from_logs(None, logs) == ("val_acc", 0.9)
    assert Tensor.reads == 1  # not the twenty losses
    assert quality_from_logs("loss_3", logs) == ("loss_3", 3.0)
    assert quality_from_logs("val_loss", logs) is None
    assert quality_from_logs("val_acc", {"val_acc": float("nan"), "accuracy": 0.5}) is None
    assert resolve_quality_metric(None, logs) == "val_acc"
