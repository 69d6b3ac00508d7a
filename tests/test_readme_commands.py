"""The README's rank and gate commands run as written on the demo's data.

The demo's store is stood in for by a small one with the same experiments, metrics and logged
models (training the real zoos takes minutes); the best model of each zoo is registered and gated
the way ``make demo`` does it (``examples/register_best.py``, then ``mlflow-green gate``), then
every ``mlflow-green rank|gate`` line of the README's bash blocks and its ``mlflow_green.rank`` /
``mlflow_green.gates.check`` Python lines run in that folder, unchanged.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from mlflow_green.record import schema

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
ZOOS = {  # experiment -> (registered model, runs: name, test accuracy, energy kWh), as the digits zoos log them
    "green-digits-keras": ("digits-keras", [("baseline", 0.97, 2e-4), ("pruned", 0.96, 1.2e-4), ("int8", 0.95, 1.5e-4)]),
    "green-digits-lightning": ("digits-lightning", [("baseline", 0.96, 3e-4), ("shared", 0.94, 1e-4)]),
}


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        return [0] * len(model_input)


def _readme_lines(prefixes: tuple[str, ...], block: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = []
    for body in re.findall(rf"```{block}\n(.*?)```", text, flags=re.S):
        for line in body.splitlines():
            if line.startswith(prefixes):
                lines.append(line.split("  #")[0].strip())
    return lines


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("demo")
    (folder / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "green-policy.toml", folder / "examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI="sqlite:///mlflow.db", PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    name_arg = {"name": "model"} if int(mlflow.__version__.split(".")[0]) >= 3 else {"artifact_path": "model"}
    for experiment, (_, runs) in ZOOS.items():
        experiment_id = mlflow.create_experiment(experiment, artifact_location=(folder / experiment).as_uri())
        for run_name, accuracy, energy_kwh in runs:
            with mlflow.start_run(experiment_id=experiment_id, run_name=run_name):
                mlflow.log_metrics({
                    "test_accuracy": accuracy, "val_accuracy": accuracy, schema.ENERGY_KWH: energy_kwh,
                    schema.EMISSIONS_KG: energy_kwh * 0.475, schema.ACCURACY_PER_KWH: accuracy / energy_kwh,
                    schema.INFERENCE_ENERGY_PER_PREDICTION_J: 2e-4,
                })
                mlflow.set_tags({schema.TAG_QUALITY_METRIC: "val_accuracy", schema.TAG_ESTIMATED: "true"})
                mlflow.pyfunc.log_model(python_model=Constant(), pip_requirements=["mlflow"], **name_arg)
    for experiment, (model, _) in ZOOS.items():  # what `make demo` does
        version = subprocess.run([sys.executable, str(ROOT / "examples" / "register_best.py"), experiment, model],
                                 cwd=folder, env=env, capture_output=True, text=True, check=True).stdout.strip()
        assert version == "1"
        gate = subprocess.run(["mlflow-green", "gate", "-m", model, "-v", version, "--policy", "examples/green-policy.toml",
                               "--alias", "champion", "--promote"], cwd=folder, env=env, capture_output=True, text=True)
        assert gate.returncode == 0, gate.stdout + gate.stderr
    return {"folder": str(folder), **env}


def test_register_best_picks_the_highest_quality_per_kwh_and_keeps_its_version(demo: dict[str, str]) -> None:
    client = mlflow.MlflowClient(f"sqlite:///{demo['folder']}/mlflow.db")
    [version] = client.search_model_versions("name = 'digits-keras'")
    assert client.get_run(version.run_id).info.run_name == "pruned"     # 0.96 / 0.12 Wh is the best ratio
    assert {k: str(v) for k, v in client.get_registered_model("digits-lightning").aliases.items()} == {"champion": "1"}
    again = subprocess.run([sys.executable, str(ROOT / "examples" / "register_best.py"), "green-digits-keras", "digits-keras"],
                           cwd=demo["folder"], env=demo, capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "1"                                   # a second demo adds no version for the same run


@pytest.mark.parametrize("line", _readme_lines(("mlflow-green rank", "mlflow-green gate"), "bash"))
def test_readme_cli_line_runs_as_written(demo: dict[str, str], line: str) -> None:
    env = {k: v for k, v in demo.items() if k != "folder"}
    done = subprocess.run(line, shell=True, cwd=demo["folder"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
    assert "Error" not in done.stderr


def test_readme_python_lines_run_as_written(demo: dict[str, str]) -> None:
    lines = [line for line in _readme_lines(("ranking = mlflow_green.rank", "best = ranking", "`mlflow_green.gates.check"), "python")]
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    check = re.search(r"`(mlflow_green\.gates\.check\([^`]*\))`", text).group(1)
    code = "\n".join(["import mlflow_green, mlflow_green.gates", *lines, f"result = {check}",
                      "assert best.run_name == 'pruned', best", "assert result.passed, result.report()", "print('ok')"])
    env = {k: v for k, v in demo.items() if k != "folder"}
    done = subprocess.run([sys.executable, "-c", code], cwd=demo["folder"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), code + "\n" + done.stderr[-2000:]
