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


# --- metadata an index accepts ---------------------------------------------------------------------

import re  # noqa: E402

import tomllib  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_every_classifier_is_a_valid_trove_classifier() -> None:
    from trove_classifiers import classifiers, deprecated_classifiers

    invalid = [c for c in PROJECT["classifiers"] if c not in classifiers]
    assert invalid == [], f"not trove classifiers (an index refuses the upload): {invalid}"
    assert not set(PROJECT["classifiers"]) & set(deprecated_classifiers)
    assert not any(c.startswith("License ::") for c in PROJECT["classifiers"])  # PEP 639: the license expression says it


def test_python_version_classifiers_follow_requires_python() -> None:
    lowest = tuple(int(p) for p in re.search(r">=\s*(\d+)\.(\d+)", PROJECT["requires-python"]).groups())
    versions = sorted(tuple(int(p) for p in c.rsplit(" ", 1)[1].split("."))
                      for c in PROJECT["classifiers"] if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
    assert versions and versions[0] == lowest
    assert versions == [(3, minor) for minor in range(lowest[1], versions[-1][1] + 1)]  # no gap
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in {f"{a}.{b}" for a, b in versions}


def test_the_license_file_matches_the_metadata() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_project_urls() -> None:
    urls = PROJECT["urls"]
    assert {"Homepage", "Documentation", "Repository", "Issues"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())


def test_every_extra_adds_something_and_all_is_every_framework() -> None:
    core = _requirement_names(PROJECT["dependencies"])
    extras = PROJECT["optional-dependencies"]
    for name, requirements in extras.items():
        if name == "all":
            continue
        assert _requirement_names(requirements) - core, f"[{name}] adds nothing over the core"
    frameworks = sorted(set(extras) - {"all", "test"})
    assert extras["all"] == [f"mlflow-green[{','.join(frameworks)}]"]
    assert frameworks == ["keras", "lightning", "transformers"]


def test_the_lowest_mlflow_is_the_one_make_test_runs_the_core_suite_on() -> None:
    lowest = next(r for r in PROJECT["dependencies"] if r.startswith("mlflow>="))
    floor = re.search(r">=\s*([\d.]+)", lowest).group(1)
    pinned = re.search(r"^MLFLOW2 \?= mlflow==([\d.]+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert pinned.startswith(floor + "."), (floor, pinned)
    assert re.search(r"<\s*4", lowest), "an upper bound: the code uses MLflow internals"


def test_upper_bounds_where_internals_are_used() -> None:
    every = [*PROJECT["dependencies"], *(r for reqs in PROJECT["optional-dependencies"].values() for r in reqs)]
    for package in ("mlflow", "codecarbon", "keras", "transformers"):
        requirement = next(r for r in every if _requirement_names([r]) == {package})
        assert "<" in requirement, requirement


@pytest.mark.slow
def test_wheel_metadata(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "Project-URL: Repository, https://" in metadata
    assert "Provides-Extra: transformers" in metadata and "Provides-Extra: nvml" not in metadata
    assert "Classifier: Framework :: MLflow" not in metadata
