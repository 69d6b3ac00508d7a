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


def test_autolog_imports_no_framework_and_a_missing_one_is_skipped_silently() -> None:
    """autolog() hooks frameworks on their import; one that is not installed is never imported, nor warned about."""
    code = (
        "import logging, warnings\n"
        "warnings.simplefilter('error')\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "import sys, importlib.abc\n"
        "class Missing(importlib.abc.MetaPathFinder):\n"  # transformers is 'not installed' in this process
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'transformers': raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Missing())\n"
        "import mlflow_green\n"
        "mlflow_green.autolog(region='DE')\n"
        "try:\n    import transformers\nexcept ModuleNotFoundError:\n    pass\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [] and out.stderr == ""
