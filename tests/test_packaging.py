"""The wheel ships the package, the integrations folder as mlflow_green.integrations, the
fakes, py.typed and the entry points; installed from the wheel, it imports and runs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(ROOT), "-w", str(out)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("mlflow_green-*.whl"))


@pytest.mark.slow
def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "mlflow_green/__init__.py",
        "mlflow_green/py.typed",
        "mlflow_green/integrations/__init__.py",
        "mlflow_green/measure/meters/builtin.py",
        "mlflow_green/meters/__init__.py",
        "mlflow_green/measure/tracker.py",
        "mlflow_green/record/schema.py",
        "mlflow_green/training/session.py",
        "mlflow_green/carbon/offline.py",
        "mlflow_green/plugins/hookspecs.py",
        "mlflow_green/testing/fake_nvml.py",
        "mlflow_green/cli/doctor.py",
        "mlflow_green/server/static/index.html",
        "mlflow_green/server/static/green.js",
        "mlflow_green/gates/policy.py",
        "mlflow_green/ranking/core.py",
    ):
        assert required in names
    assert not any(name.startswith(("integrations/", "tests/")) for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "mlflow-green = mlflow_green.cli:main" in text
    assert "[mlflow.run_context_provider]" in text
    assert "green = mlflow_green.server.app:create_app" in text
    assert "[mlflow.model_evaluator]" in text and "green = mlflow_green.inference.evaluator:GreenEvaluator" in text
    assert "mlflow_green/inference/evaluator.py" in names


@pytest.mark.slow
def test_installed_wheel_imports_and_runs_doctor(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import mlflow_green, mlflow_green.integrations, mlflow_green.testing\n"
        "from mlflow_green.cli.doctor import diagnose\n"
        "from mlflow_green.config import GreenConfig\n"
        "print(mlflow_green.__file__)\n"
        "print(diagnose(GreenConfig.resolve())['components']['cpu']['meter'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # not the source tree
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    file_line, meter = out.stdout.split()[-2:]
    assert file_line.startswith(str(target))
    assert meter in {"estimate", "rapl"}
