"""`import mlflow_green` must not pull in heavy frameworks (DESIGN.md §5)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "keras", "tensorflow", "lightning", "pytorch_lightning", "pynvml", "codecarbon")


def _imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_mlflow_green_leaves_heavy_modules_out() -> None:
    assert _imported_after("import mlflow_green") == set()


def test_building_a_tracker_and_the_cli_leave_heavy_modules_out() -> None:
    code = (
        "import mlflow_green\n"
        "from mlflow_green.cli import main\n"
        "from mlflow_green.measure.selection import instantiate, select_meters\n"
        "t = mlflow_green.EnergyTracker(region='DE')\n"
        "select_meters(instantiate(None))\n"
    )
    assert _imported_after(code) == set()
