"""``predict_with``: the green evaluator calls the pyfunc model (default) or the framework model under it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlflow_green.errors import ConfigError
from mlflow_green.record import schema

FAST = {"batch_sizes": [4], "warmup_s": 0.0, "min_duration_s": 0.05}
NAME = {"name": "model"} if int(mlflow.__version__.split(".")[0]) >= 3 else {"artifact_path": "model"}


def run_of(result: Any) -> str:
    """The evaluation's run: ``EvaluationResult.run_id`` since MLflow 3, the last active run on 2.x."""
    run_id = getattr(result, "run_id", None)
    return run_id if run_id is not None else mlflow.last_active_run().info.run_id


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201 - MLflow reads the hints
        return np.zeros(len(model_input))


@pytest.fixture()
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.random((40, 8)), columns=[f"f{i}" for i in range(8)]).assign(label=rng.integers(0, 2, 40))


def report_of(run_id: str, tmp_path: Path) -> dict[str, Any]:
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=schema.INFERENCE_REPORT_ARTIFACT,
                                               dst_path=str(tmp_path))
    return json.loads(Path(path).read_text())


def evaluate(uri: str, frame: pd.DataFrame, **config: Any) -> Any:
    return mlflow.models.evaluate(uri, frame, targets="label", model_type="classifier", evaluators="green",
                                  evaluator_config={**FAST, **config})


def test_pyfunc_is_the_default_and_raw_model_calls_the_estimator(mlflow_experiment: str, frame: pd.DataFrame,
                                                                 tmp_path: Path) -> None:
    x, y = frame.drop(columns="label"), frame["label"]
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(LogisticRegression().fit(x, y), **NAME, pip_requirements=["scikit-learn"])
    pyfunc = report_of(run_of(evaluate(info.model_uri, frame)), tmp_path / "a")
    assert pyfunc["predict_with"] == "pyfunc" and pyfunc["model"].startswith("MLflow pyfunc model (sklearn")
    raw = report_of(run_of(evaluate(info.model_uri, frame, predict_with="raw_model")), tmp_path / "b")
    assert raw["predict_with"] == "raw_model" and raw["model"] == "LogisticRegression.predict"


def test_raw_model_of_a_keras_model_uses_predict_on_batch(mlflow_experiment: str, frame: pd.DataFrame,
                                                          tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")], name="tiny")
    with mlflow.start_run():
        info = mlflow.keras.log_model(model, **NAME, pip_requirements=["keras"])
    raw = report_of(run_of(evaluate(info.model_uri, frame, predict_with="raw_model")), tmp_path)
    assert raw["model"] == "Keras model 'tiny'" and raw["results"][0]["predictions"] > 0


def test_raw_model_needs_a_framework_model_and_bad_values_are_errors(mlflow_experiment: str,
                                                                       frame: pd.DataFrame) -> None:
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(**NAME, python_model=Echo(), pip_requirements=["mlflow"])
    runs_before = len(mlflow.search_runs([mlflow_experiment]))
    with pytest.raises(ConfigError, match="predict_with must be one of pyfunc, raw_model"):
        evaluate(info.model_uri, frame, predict_with="keras")
    assert evaluate(info.model_uri, frame).metrics[schema.INFERENCE_ENERGY_PER_PREDICTION_J] > 0
    with pytest.raises(ConfigError, match="predict_with='raw_model'"):
        evaluate(info.model_uri, frame, predict_with="raw_model")
    failed = mlflow.search_runs([mlflow_experiment], filter_string="attributes.status = 'FAILED'")
    assert len(failed) == 2 and len(mlflow.search_runs([mlflow_experiment])) == runs_before + 3


def test_measure_inference_takes_a_loaded_pyfunc_model(mlflow_experiment: str, frame: pd.DataFrame) -> None:
    import mlflow_green
    from mlflow_green.testing import FakeMeter

    x, y = frame.drop(columns="label"), frame["label"]
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(LogisticRegression().fit(x, y), **NAME, pip_requirements=["scikit-learn"])
    model = mlflow.pyfunc.load_model(info.model_uri)
    report = mlflow_green.measure_inference(model, x, batch_sizes=(1, 8), warmup_s=0, min_duration_s=0.05,
                                            meters=[FakeMeter({"cpu:0": 20.0, "ram:0": 2.0})])
    assert report.model == f"MLflow pyfunc model (sklearn, run {run.info.run_id})"
    assert report[8].power_w == pytest.approx(22.0) and report[8].predictions >= 16
