"""The ``green`` MLflow evaluator on a real sqlite store, with scikit-learn pyfunc models.

Alone and beside MLflow's default evaluator; registered versions (by number and by alias) get
``green.inference_run``; a model that raises, empty data, unknown keys and bad batch sizes fail
loudly with nothing logged; ``evaluators=None`` leaves the evaluator out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from mlflow_green.errors import ConfigError, InferenceError
from mlflow_green.record import schema
from mlflow_green.testing import FakeMeter

FAST = {"warmup_s": 0.0, "min_duration_s": 0.05}


class Raising(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201 - MLflow infers a schema from hints
        raise RuntimeError("CUDA out of memory (scripted)")
GREEN_KEYS = set(schema.INFERENCE_METRICS)


def fake_meters() -> list[FakeMeter]:
    return [FakeMeter({"cpu:0": 40.0, "ram:0": 4.0})]


@pytest.fixture(scope="module")
def digits_frame() -> pd.DataFrame:
    from sklearn.datasets import load_digits

    data = load_digits()
    frame = pd.DataFrame(data.data[:200] / 16.0, columns=[f"p{i}" for i in range(64)])
    return frame.assign(label=data.target[:200])


def run_of(result: Any) -> str:
    """The evaluation's run: ``EvaluationResult.run_id`` since MLflow 3, the last active run on 2.x."""
    run_id = getattr(result, "run_id", None)
    return run_id if run_id is not None else mlflow.last_active_run().info.run_id


MODEL_NAME = {"name": "model"} if int(mlflow.__version__.split(".")[0]) >= 3 else {"artifact_path": "model"}
"""log_model's argument for the model's name: ``name`` since MLflow 3, ``artifact_path`` on 2.x (the core suite runs on both)."""


@pytest.fixture(scope="module")
def logged(tracking_uri: str, digits_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two logistic regressions and a model that raises, each logged once for the module (logging is slow)."""
    mlflow.set_tracking_uri(tracking_uri)
    location = tmp_path_factory.mktemp("evaluator-artifacts").as_uri()
    experiment_id = mlflow.create_experiment(f"green-evaluator-models-{id(location)}", artifact_location=location)
    x, y = digits_frame.drop(columns="label"), digits_frame["label"]
    logged = {}
    for key, iterations in (("model", 300), ("other", 50)):
        with mlflow.start_run(experiment_id=experiment_id, run_name=key) as run:
            info = mlflow.sklearn.log_model(LogisticRegression(max_iter=iterations).fit(x, y), **MODEL_NAME,
                                            pip_requirements=["scikit-learn"])
        logged[key] = {"run_id": run.info.run_id, "uri": info.model_uri}
    with mlflow.start_run(experiment_id=experiment_id, run_name="raising"):
        info = mlflow.pyfunc.log_model(**MODEL_NAME, python_model=Raising(), pip_requirements=["mlflow"])
    logged["raising"] = {"uri": info.model_uri}
    return logged


def register(uri: str, request: pytest.FixtureRequest, prefix: str) -> str:
    name = f"{prefix}-{request.node.name}"[:60].replace("[", "-").replace("]", "")
    mlflow.register_model(uri, name)
    return name


@pytest.fixture()
def registered(mlflow_experiment: str, logged: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
    """The logistic regression, registered as version 1 of a model of its own."""
    return {"name": register(logged["model"]["uri"], request, "digits"), **logged["model"]}




def green_of(run_id: str) -> tuple[dict[str, float], dict[str, str], list[str]]:
    client = MlflowClient()
    run = client.get_run(run_id)
    metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("green/")}
    tags = {k: v for k, v in run.data.tags.items() if k.startswith("green.inference")}
    artifacts = [a.path for a in client.list_artifacts(run_id, "green")]
    return metrics, tags, artifacts


def test_beside_the_default_evaluator_the_accuracy_and_the_figures_share_a_run(
    registered: dict[str, Any], digits_frame: pd.DataFrame, tmp_path: Path
) -> None:
    client = MlflowClient()
    result = mlflow.models.evaluate(
        f"models:/{registered['name']}/1", digits_frame, targets="label", model_type="classifier",
        evaluators=["default", "green"], evaluator_config={"green": {"batch_sizes": [1, 16], **FAST}},
    )
    run = client.get_run(run_of(result))
    assert "accuracy_score" in run.data.metrics
    assert GREEN_KEYS <= set(run.data.metrics)
    assert result.metrics[schema.INFERENCE_ENERGY_PER_PREDICTION_J] == run.data.metrics[
        schema.INFERENCE_ENERGY_PER_PREDICTION_J]
    # the sweep is the history, step = batch size; the latest value is the headline (largest) batch size
    history = client.get_metric_history(run_of(result), schema.INFERENCE_ENERGY_PER_PREDICTION_J)
    assert sorted(m.step for m in history) == [1, 16]
    assert run.data.metrics[schema.INFERENCE_ENERGY_PER_PREDICTION_J] == next(m.value for m in history if m.step == 16)
    tags = run.data.tags
    assert tags[schema.TAG_INFERENCE_BATCH_SIZE] == "16"
    assert tags[schema.TAG_INFERENCE_METERS] == tags[schema.TAG_METERS]
    assert tags[schema.TAG_INFERENCE_ESTIMATED] in ("true", "false")
    assert tags[schema.TAG_QUALITY_METRIC] == "accuracy_score"
    report = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=run_of(result), artifact_path=schema.INFERENCE_REPORT_ARTIFACT, dst_path=str(tmp_path))).read_text())
    assert report["kind"] == "inference" and report["headline_batch_size"] == 16
    assert [r["batch_size"] for r in report["results"]] == [1, 16]
    assert report["results"][0]["measurement"]["devices"]
    assert "warm-up calls before each window" in report["excluded"]
    assert report["evaluated_model"]["run_id"] == registered["run_id"]
    # the registered version now points at its evaluation
    version = client.get_model_version(registered["name"], "1")
    assert version.tags[schema.TAG_INFERENCE_RUN] == run_of(result)


def test_alone_with_injected_meters_figures_follow_the_meters(
    registered: dict[str, Any], digits_frame: pd.DataFrame
) -> None:
    result = mlflow.models.evaluate(
        registered["uri"], digits_frame, targets="label", model_type="classifier", evaluators="green",
        evaluator_config={"batch_sizes": [8], "meters": fake_meters(), **FAST},
    )
    metrics, tags, artifacts = green_of(run_of(result))
    assert set(metrics) == GREEN_KEYS  # no default-evaluator metric ran
    assert "accuracy_score" not in MlflowClient().get_run(run_of(result)).data.metrics
    assert metrics[schema.INFERENCE_POWER_W] == pytest.approx(44.0)
    assert tags[schema.TAG_INFERENCE_ESTIMATED] == "false"
    assert tags[schema.TAG_INFERENCE_METERS] == "cpu:fake,ram:fake"
    assert artifacts == [schema.INFERENCE_REPORT_ARTIFACT]


def test_an_alias_uri_tags_the_version_it_points_to(registered: dict[str, Any], logged: dict[str, Any],
                                                    digits_frame: pd.DataFrame) -> None:
    client = MlflowClient()
    name = registered["name"]
    mlflow.register_model(logged["other"]["uri"], name)  # a second, different model: version 2
    client.set_registered_model_alias(name, "champion", "2")
    result = mlflow.models.evaluate(f"models:/{name}@champion", digits_frame, targets="label",
                                    model_type="classifier", evaluators="green",
                                    evaluator_config={"batch_sizes": [4], "meters": fake_meters(), **FAST})
    assert client.get_model_version(name, "2").tags[schema.TAG_INFERENCE_RUN] == run_of(result)
    assert schema.TAG_INFERENCE_RUN not in client.get_model_version(name, "1").tags


def test_inside_a_training_run_the_training_tags_are_kept(registered: dict[str, Any],
                                                          digits_frame: pd.DataFrame) -> None:
    client = MlflowClient()
    with mlflow.start_run(run_name="training") as training:
        mlflow.set_tags({schema.TAG_METERS: "cpu:rapl,ram:rapl", schema.TAG_ESTIMATED: "false",
                         schema.TAG_QUALITY_METRIC: "val_accuracy"})
        result = mlflow.models.evaluate(registered["uri"], digits_frame, targets="label", model_type="classifier",
                                        evaluators="green", evaluator_config={"batch_sizes": [2], **FAST})
    assert run_of(result) == training.info.run_id
    tags = client.get_run(training.info.run_id).data.tags
    assert tags[schema.TAG_METERS] == "cpu:rapl,ram:rapl"  # training's provenance untouched
    assert tags[schema.TAG_ESTIMATED] == "false"
    assert tags[schema.TAG_QUALITY_METRIC] == "val_accuracy"
    assert tags[schema.TAG_INFERENCE_METERS]  # the inference measurement's own provenance


def test_the_line_without_model_type_is_refused_by_mlflow_and_the_docs_give_the_call_that_works(
    registered: dict[str, Any], digits_frame: pd.DataFrame
) -> None:
    """``mlflow.models.evaluate(model_uri, data, evaluators="green")`` cannot work: MLflow (2.22 and 3.x)
    requires ``model_type`` or ``extra_metrics`` and refuses the call in its own argument check, before
    any evaluator is loaded — no plugin can change that without patching MLflow. What the user gets is
    MLflow's message; docs/inference.md quotes it next to the call that works, and that call works."""
    from mlflow.exceptions import MlflowException

    uri = f"models:/{registered['name']}/1"
    with pytest.raises(MlflowException) as refused:
        mlflow.models.evaluate(uri, digits_frame, evaluators="green")
    message = refused.value.message
    assert "extra_metrics argument must be specified" in message
    assert schema.TAG_INFERENCE_RUN not in MlflowClient().get_model_version(registered["name"], "1").tags
    root = Path(__file__).resolve().parents[2]
    docs, readme = (root / "docs" / "inference.md").read_text(), (root / "README.md").read_text()
    assert message in docs  # searching the error finds the page that explains it
    assert 'evaluators="green")` is refused by MLflow' in readme
    result = mlflow.models.evaluate(uri, digits_frame, targets="label", model_type="classifier", evaluators="green",
                                    evaluator_config={"batch_sizes": [4], "meters": fake_meters(), **FAST})
    assert result.metrics[schema.INFERENCE_ENERGY_PER_PREDICTION_J] > 0


def test_a_second_evaluation_in_one_run_never_hides_behind_the_first(
    registered: dict[str, Any], digits_frame: pd.DataFrame
) -> None:
    """Headline = the largest batch size = MLflow's latest value, which ranking and gates read. A second
    evaluation in the same run up to a smaller batch size would leave the first one's figure as latest
    under the second's green.inference_batch_size (a gate passed on numbers it did not measure): refused
    before the model is called. The same or larger batch sizes replace it."""
    uri, client = f"models:/{registered['name']}/1", MlflowClient()

    def evaluate(batch_sizes: list[int], watts: float) -> None:
        meters = [FakeMeter({"cpu:0": watts})]
        mlflow.models.evaluate(uri, digits_frame, targets="label", model_type="classifier", evaluators="green",
                               evaluator_config={"batch_sizes": batch_sizes, "meters": meters, **FAST})

    with mlflow.start_run() as run:
        evaluate([1, 32], 10.0)
        first = client.get_run(run.info.run_id).data.metrics[schema.INFERENCE_ENERGY_PER_PREDICTION_J]
        with pytest.raises(ConfigError, match="already holds a green evaluation measured up to batch size 32"):
            evaluate([4], 1000.0)
        after = client.get_run(run.info.run_id)
        assert after.data.metrics[schema.INFERENCE_ENERGY_PER_PREDICTION_J] == first
        assert after.data.tags[schema.TAG_INFERENCE_BATCH_SIZE] == "32"  # figure and batch size still agree
        evaluate([64], 1000.0)  # a larger headline replaces it
        again = client.get_run(run.info.run_id)
    assert again.data.tags[schema.TAG_INFERENCE_BATCH_SIZE] == "64"
    assert again.data.metrics[schema.INFERENCE_ENERGY_PER_PREDICTION_J] != first


def test_evaluators_none_does_not_run_the_green_evaluator(registered: dict[str, Any],
                                                          digits_frame: pd.DataFrame) -> None:
    result = mlflow.models.evaluate(registered["uri"], digits_frame, targets="label", model_type="classifier",
                                    evaluator_config={"log_model_explainability": False})
    assert "accuracy_score" in result.metrics
    assert not any(k.startswith("green/") for k in result.metrics)


# --- failures: loud, and nothing half-logged --------------------------------------------------------


@pytest.fixture()
def raising_uri(mlflow_experiment: str, logged: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, str]:
    name = register(logged["raising"]["uri"], request, "raising")
    return {"uri": f"models:/{name}/1", "name": name}


@pytest.mark.parametrize("evaluators", ["green", ["green", "default"]])
def test_a_model_that_raises_fails_the_evaluation_and_logs_nothing(
    raising_uri: dict[str, str], digits_frame: pd.DataFrame, evaluators: Any, mlflow_experiment: str
) -> None:
    config = {"batch_sizes": [4], **FAST}
    if isinstance(evaluators, list):
        config = {"green": config}
    with pytest.raises(InferenceError, match="raised RuntimeError .* CUDA out of memory") as info:
        mlflow.models.evaluate(raising_uri["uri"], digits_frame, targets="label", model_type="classifier",
                               evaluators=evaluators, evaluator_config=config)
    run = MlflowClient().search_runs([mlflow_experiment], order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert run.info.status == "FAILED"
    metrics, tags, artifacts = green_of(run.info.run_id)
    assert (metrics, tags, artifacts) == ({}, {}, [])
    assert schema.TAG_INFERENCE_RUN not in MlflowClient().get_model_version(raising_uri["name"], "1").tags
    assert isinstance(info.value.__cause__, Exception)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"batch_size": 8}, "unknown evaluator_config key 'batch_size' .*did you mean 'batch_sizes'"),
        ({"batch_sizes": [0]}, "positive integers"),
        ({"batch_sizes": [-8, 1]}, "positive integers"),
        ({"batch_sizes": [1.5]}, "positive integers"),
        ({"min_duration_s": -1}, "min_duration_s"),
        ({"quality_metric": ""}, "quality_metric"),
        ({"tag_registered_versions": "yes"}, "tag_registered_versions"),
        ({"region": "Mordor"}, "Mordor"),
    ],
)
def test_bad_config_fails_before_the_model_is_called(
    raising_uri: dict[str, str], digits_frame: pd.DataFrame, config: dict, message: str
) -> None:
    # the model raises when called: a ConfigError proves the check came first
    with pytest.raises(ConfigError, match=message):
        mlflow.models.evaluate(raising_uri["uri"], digits_frame, targets="label", model_type="classifier",
                               evaluators="green", evaluator_config=config)


def test_empty_data_is_a_clear_error_before_measuring(raising_uri: dict[str, str], digits_frame: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="data is empty"):
        mlflow.models.evaluate(raising_uri["uri"], digits_frame.iloc[:0], targets="label", model_type="classifier",
                               evaluators="green")


def test_static_predictions_without_a_model_are_a_clear_error(digits_frame: pd.DataFrame,
                                                              mlflow_experiment: str) -> None:
    frame = digits_frame.assign(prediction=np.zeros(len(digits_frame), dtype=int))
    with pytest.raises(ConfigError, match="no model"):
        mlflow.models.evaluate(data=frame, targets="label", predictions="prediction", model_type="classifier",
                               evaluators="green")
