"""Inference end to end on a real ``mlflow server --app-name green`` with a gate policy.

Models are logged, registered and evaluated through the server by the real ``green`` evaluator
(beside MLflow's default one); the ranking by inference is asked through ``/green/api`` (Python
API and CLI); the server refuses the ``champion`` alias for a version without an evaluation or
one that is too slow, with the gate's usual message; ``mlflow-green gate`` agrees; and the
``/green/`` page's Training / Inference switch shows the inference columns in headless Chromium.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import mlflow_green
from mlflow_green.cli import main as cli
from mlflow_green.record import schema
from mlflow_green.testing.server import GreenServer

pytestmark = pytest.mark.slow

POLICY = """
[aliases.champion]
require_inference_measurement = true
max_inference_latency_ms = 10
max_inference_energy_per_prediction_j = 1.0
"""
GREEN = {"batch_sizes": [1, 16], "warmup_s": 0.05, "min_duration_s": 0.1}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def run_of(result: Any) -> str:
    """The evaluation's run: ``EvaluationResult.run_id`` since MLflow 3, the last active run on 2.x."""
    run_id = getattr(result, "run_id", None)
    return run_id if run_id is not None else mlflow.last_active_run().info.run_id


MODEL_NAME = {"name": "model"} if int(mlflow.__version__.split(".")[0]) >= 3 else {"artifact_path": "model"}
"""log_model's argument for the model's name: ``name`` since MLflow 3, ``artifact_path`` on 2.x."""


class Sluggish(mlflow.pyfunc.PythonModel):
    """A model that takes 30 ms per call, whatever the batch (a big model on a small machine)."""

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201 - MLflow reads the hints
        time.sleep(0.03)
        return [0] * len(model_input)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GreenServer]:
    workdir = tmp_path_factory.mktemp("inference-server")
    policy = workdir / "green-policy.toml"
    policy.write_text(POLICY)
    env = {"MLFLOW_GREEN_GATE_POLICY": str(policy), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with GreenServer(workdir, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def zoo(server: GreenServer) -> Iterator[dict[str, Any]]:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server.url)
    try:
        yield _build_zoo(server)
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)


def _build_zoo(server: GreenServer) -> dict[str, Any]:
    client = MlflowClient(server.url)
    suffix = uuid.uuid4().hex[:8]
    experiment = f"inference-e2e-{suffix}"
    mlflow.set_experiment(experiment)
    model = f"digits-e2e-{suffix}"
    data = load_digits()
    frame = pd.DataFrame(data.data[:300] / 16.0, columns=[f"p{i}" for i in range(64)]).assign(label=data.target[:300])
    x, y = frame.drop(columns="label"), frame["label"]
    with mlflow.start_run(run_name="fast"):
        mlflow.log_metric("test_accuracy", 0.95)
        mlflow.sklearn.log_model(LogisticRegression(max_iter=300).fit(x, y), **MODEL_NAME,
                                 registered_model_name=model, pip_requirements=["scikit-learn"])
    with mlflow.start_run(run_name="sluggish"):
        mlflow.log_metric("test_accuracy", 0.97)
        mlflow.pyfunc.log_model(**MODEL_NAME, python_model=Sluggish(), registered_model_name=model,
                                pip_requirements=["mlflow"])
    with mlflow.start_run(run_name="never-evaluated"):
        mlflow.log_metric("test_accuracy", 0.99)
        mlflow.sklearn.log_model(LogisticRegression(max_iter=20).fit(x, y), **MODEL_NAME,
                                 registered_model_name=model, pip_requirements=["scikit-learn"])
    evaluations = {}
    for version in ("1", "2"):
        result = mlflow.models.evaluate(f"models:/{model}/{version}", frame, targets="label",
                                        model_type="classifier", evaluators=["default", "green"],
                                        evaluator_config={"green": GREEN, "default": {"log_model_explainability": False}})
        evaluations[version] = run_of(result)
    return {"client": client, "model": model, "experiment": experiment, "evaluations": evaluations, "url": server.url}


def test_the_evaluator_tagged_the_versions_through_the_server(zoo: dict[str, Any]) -> None:
    client = zoo["client"]
    for version, run_id in zoo["evaluations"].items():
        model_version = client.get_model_version(zoo["model"], version)
        assert model_version.tags[schema.TAG_INFERENCE_RUN] == run_id
        assert client.get_run(run_id).data.tags[schema.TAG_INFERENCE_MODEL_RUN] == model_version.run_id
        metrics = client.get_run(run_id).data.metrics
        assert "accuracy_score" in metrics and metrics[schema.INFERENCE_ENERGY_PER_PREDICTION_J] > 0
    assert schema.TAG_INFERENCE_RUN not in client.get_model_version(zoo["model"], "3").tags


def test_rank_by_inference_through_the_green_api(zoo: dict[str, Any]) -> None:
    ranking = mlflow_green.rank(model=zoo["model"], metric="test_accuracy", by="inference", tracking_uri=zoo["url"])
    rows = {r.model_version: r for r in ranking.rows}
    assert ranking.by == "inference"
    assert rows["1"].rank == 1 and rows["2"].rank == 2  # 30 ms a call costs more per prediction
    assert rows["1"].energy_per_prediction_j < rows["2"].energy_per_prediction_j
    assert rows["2"].latency_ms >= 30.0 and rows["1"].inference_batch_size == 16
    assert rows["1"].inference_run_id == zoo["evaluations"]["1"]
    assert rows["3"].reason.startswith("not evaluated")
    experiment = mlflow_green.rank(zoo["experiment"], metric="test_accuracy", by="inference", tracking_uri=zoo["url"])
    names = [r.run_name for r in experiment.ranked]
    assert names == ["fast", "sluggish"]  # the evaluation runs are joined, not listed on their own
    out = CliRunner().invoke(cli, ["rank", "-m", zoo["model"], "--by", "inference", "--metric", "test_accuracy",
                                   "--tracking-uri", zoo["url"]])
    assert out.exit_code == 0 and "J/prediction" in out.output and "not evaluated" in out.output


def test_the_server_refuses_the_alias_without_an_evaluation_or_when_too_slow(zoo: dict[str, Any]) -> None:
    client, model = zoo["client"], zoo["model"]
    with pytest.raises(MlflowException) as never:
        client.set_registered_model_alias(model, "champion", "3")
    message = str(never.value)
    assert never.value.error_code == "PERMISSION_DENIED"
    assert f"mlflow-green gate refused setting alias 'champion' for model '{model}' version 3" in message
    assert "require_inference_measurement: no inference measurement" in message
    with pytest.raises(MlflowException) as slow:
        client.set_registered_model_alias(model, "champion", "2")
    assert "max_inference_latency_ms:" in str(slow.value) and "> limit 10 ms (batch size 16" in str(slow.value)
    assert "champion" not in client.get_registered_model(model).aliases
    client.set_registered_model_alias(model, "champion", "1")
    assert str(client.get_registered_model(model).aliases["champion"]) == "1"


def test_cli_gate_against_the_server(zoo: dict[str, Any], tmp_path: Path) -> None:
    policy = tmp_path / "green-policy.toml"
    policy.write_text(POLICY)
    base = ["gate", "-m", zoo["model"], "--policy", str(policy), "--alias", "champion", "--tracking-uri", zoo["url"],
            "--no-tags"]
    assert CliRunner().invoke(cli, [*base, "-v", "1"]).exit_code == 0
    failed = CliRunner().invoke(cli, [*base, "-v", "2"])
    assert failed.exit_code == 1 and "max_inference_latency_ms" in failed.output


# --- the page ----------------------------------------------------------------------------------------


def _chromium() -> str:
    for candidate in (os.environ.get("MLFLOW_GREEN_CHROMIUM", ""), shutil.which("chromium") or "",
                      shutil.which("chromium-browser") or "", shutil.which("google-chrome") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("Chromium not found: apt-get install chromium, or set MLFLOW_GREEN_CHROMIUM")


def test_the_page_switches_between_training_and_inference(zoo: dict[str, Any]) -> None:
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("the browser test needs Playwright's Python package: pip install playwright")
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{zoo['url']}/green/?tab=models&model={zoo['model']}&metric=test_accuracy")
            page.wait_for_selector("body[data-ready=true]", timeout=30_000)
            expect(page.locator("#models-table tbody tr")).to_have_count(3)
            assert page.locator("#models-table th[data-key=energy_kwh]").count() == 1
            page.locator("#by-switch label", has_text="Inference").click()
            expect(page.locator("#models-table th[data-key=energy_per_prediction_j]")).to_have_count(1)
            assert page.locator("#models-table th[data-key=energy_kwh]").count() == 0
            assert page.locator("#page-title").inner_text() == "Accuracy per joule per prediction"
            assert "by=inference" in page.url
            expect(page.locator("#model-status")).to_contain_text("J/prediction at batch size 16")
            rows = page.locator("#models-table tbody tr")
            first = rows.nth(0)
            assert first.locator("td[data-key=model_version]").inner_text() == "v1"  # rank order: v1 is the cheapest per prediction
            latency = page.locator("#models-table tbody td[data-key=latency_ms]").all_inner_texts()
            assert any(t.endswith(" ms") for t in latency)
            assert page.locator("#model-plot text.axis-label").first.text_content().startswith("Energy per prediction")
            assert page.locator("#model-plot circle.dot").count() == 2
            page.screenshot(path=str(_artifacts() / "view-inference.png"), full_page=True)
            page.reload()  # the mode survives a reload (URL state)
            page.wait_for_selector("body[data-ready=true]", timeout=30_000)
            assert page.locator("#by-inference").is_checked()
            page.locator("#by-switch label", has_text="Training").click()
            expect(page.locator("#models-table th[data-key=energy_kwh]")).to_have_count(1)
            assert "by=inference" not in page.url
        finally:
            browser.close()
    assert errors == []


def _artifacts() -> Path:
    path = Path(os.environ.get("MLFLOW_GREEN_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path
