"""Measuring inference and loading the evaluator import no deep-learning framework (DESIGN.md §5)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "keras", "tensorflow", "lightning", "pytorch_lightning", "pynvml", "jax")


def imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_measuring_a_callable_and_loading_the_evaluator_leave_frameworks_out() -> None:
    code = (
        "import mlflow_green\n"
        "from mlflow_green.testing import FakeMeter\n"
        "mlflow_green.measure_inference(lambda b: b, [[1.0]] * 8, batch_sizes=(1, 4), warmup_s=0,"
        " min_duration_s=0.01, meters=[FakeMeter({'cpu:0': 1.0, 'ram:0': 1.0})])\n"
        "from mlflow.models.evaluation import list_evaluators\n"
        "assert 'green' in list_evaluators()\n"
        "import mlflow_green.inference.evaluator\n"
    )
    assert imported_after(code) == set()
