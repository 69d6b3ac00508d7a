"""The ``green`` evaluator signs its evaluation with MLFLOW_GREEN_SIGNING_KEY (real sqlite store, real
scikit-learn models, the real evaluator): the same manifest as a training run, covering the inference
figures, tags and green/inference_report.json; a training run it logged into is signed again so that
it verifies; a training's figures it did not measure are never signed by it; without a key nothing
changes; `mlflow-green verify -r` checks an evaluation run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from signed_evaluations import digits_frame, evaluate, train

from mlflow_green.cli import main
from mlflow_green.errors import ConfigError, SignatureError
from mlflow_green.record import schema
from mlflow_green.record.run_signature import verify_run
from mlflow_green.record.signing import SIGNED_ARTIFACTS, Manifest, SigningKey, TrustedKeys, generate_key_pair


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    private, public = generate_key_pair(tmp_path_factory.mktemp("evaluation-keys"))
    training_private, training_public = generate_key_pair(tmp_path_factory.mktemp("training-keys"))
    return {"private": private, "public": public, "training": training_private, "training_public": training_public}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return digits_frame()


@pytest.fixture(scope="module")
def model(tracking_uri: str, frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One unsigned training whose model every evaluation-only test evaluates (logging a model is slow)."""
    mlflow.set_tracking_uri(tracking_uri)
    location = tmp_path_factory.mktemp("signed-evaluation-artifacts").as_uri()
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("signed-evaluation-models", artifact_location=location))
    run_id, uri = train(frame, signing=None)
    return {"run_id": run_id, "uri": uri}


def trusted(*paths: Path) -> TrustedKeys:
    return TrustedKeys.from_paths(list(paths))


def manifest_of(client: MlflowClient, run_id: str, tmp_path: Path) -> Manifest:
    tmp_path.mkdir(parents=True, exist_ok=True)  # MLflow 2.x downloads only into an existing folder
    path = client.download_artifacts(run_id, schema.SIGNED_MANIFEST_ARTIFACT, str(tmp_path))
    return Manifest.from_bytes(Path(path).read_bytes())


def verify_cli(run_id: str, public: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["verify", "-r", run_id, "--tracking-uri", mlflow.get_tracking_uri(),
                                       "--trusted-keys", str(public)])
    return result.exit_code, result.output


def test_an_evaluation_run_is_signed_and_verifies(model: dict[str, str], frame: pd.DataFrame, keys: dict[str, Path],
                                                  mlflow_experiment: str, tmp_path: Path) -> None:
    client = MlflowClient()
    run_id = evaluate(model["uri"], frame, signing=keys["private"], evaluators=["default", "green"])
    run = client.get_run(run_id)
    assert json.loads(run.data.tags[schema.TAG_SIGNATURE])["key_id"] == SigningKey.from_file(keys["private"]).key_id
    verification = verify_run(client, run_id, trusted(keys["public"]))
    assert verification.ok, verification.reason
    manifest = manifest_of(client, run_id, tmp_path)
    # the same canonical manifest as a training run: run id, every green/ metric, every green. tag, the reports
    assert manifest.run_id == run_id
    assert set(manifest.metrics) == {k for k in run.data.metrics if k.startswith("green/")} >= set(schema.INFERENCE_METRICS)
    assert manifest.metrics[schema.INFERENCE_ENERGY_PER_PREDICTION_J] == run.data.metrics[schema.INFERENCE_ENERGY_PER_PREDICTION_J]
    assert set(manifest.tags) == {k for k in run.data.tags if k.startswith("green.") and k != schema.TAG_SIGNATURE}
    assert manifest.tags[schema.TAG_INFERENCE_MODEL_RUN] == model["run_id"]
    assert set(manifest.artifacts) == set(SIGNED_ARTIFACTS)
    assert manifest.artifacts[schema.INFERENCE_REPORT_ARTIFACT] is not None
    assert manifest.artifacts[schema.REPORT_ARTIFACT] is None  # an evaluation-only run has no training report
    assert "accuracy_score" in run.data.metrics  # the default evaluator's figures sit beside, unsigned
    code, output = verify_cli(run_id, keys["public"])
    assert code == 0 and output.startswith(f"signed: run {run_id}: signed by key ")


@pytest.mark.parametrize(
    "tamper",
    ["metric", "metric-added", "tag", "tag-removed", "report-changed", "report-removed-and-training-report-added"],
)
def test_every_change_to_a_signed_evaluation_is_named(model: dict[str, str], frame: pd.DataFrame,
                                                      keys: dict[str, Path], mlflow_experiment: str, tamper: str) -> None:
    client = MlflowClient()
    run_id = evaluate(model["uri"], frame, signing=keys["private"])
    run = client.get_run(run_id)
    energy = run.data.metrics[schema.INFERENCE_ENERGY_PER_PREDICTION_J]
    expected: list[str]
    if tamper == "metric":  # the reported forgery: a tiny J/prediction as the latest value
        client.log_metric(run_id, schema.INFERENCE_ENERGY_PER_PREDICTION_J, 1e-12, step=10**6)
        expected = [f"{schema.INFERENCE_ENERGY_PER_PREDICTION_J}: signed {energy:.6g}, now 1e-12"]
    elif tamper == "metric-added":
        client.log_metric(run_id, schema.ENERGY_KWH, 1e-9)
        expected = [f"{schema.ENERGY_KWH}: 1e-09 was logged after signing"]
    elif tamper == "tag":
        client.set_tag(run_id, schema.TAG_INFERENCE_METERS, "gpu:nvml-counter")
        expected = [f"{schema.TAG_INFERENCE_METERS}: signed 'cpu:fake,ram:fake', now 'gpu:nvml-counter'"]
    elif tamper == "tag-removed":
        client.delete_tag(run_id, schema.TAG_INFERENCE_MODEL_RUN)
        expected = [f"{schema.TAG_INFERENCE_MODEL_RUN}: removed after signing (signed '{model['run_id']}')"]
    elif tamper == "report-changed":
        client.log_dict(run_id, {"kind": "inference", "results": []}, schema.INFERENCE_REPORT_ARTIFACT)
        expected = [f"{schema.INFERENCE_REPORT_ARTIFACT}: changed after signing"]
    else:
        local = Path(run.info.artifact_uri.removeprefix("file://")) / schema.INFERENCE_REPORT_ARTIFACT
        local.unlink()
        client.log_dict(run_id, {"schema_version": 1}, schema.REPORT_ARTIFACT)
        expected = [f"{schema.INFERENCE_REPORT_ARTIFACT}: removed after signing", f"{schema.REPORT_ARTIFACT}: added after signing"]
    verification = verify_run(client, run_id, trusted(keys["public"]))
    assert verification.status == "tampered" and list(verification.changes) == expected
    assert verification.reason == "changed after signing: " + "; ".join(expected)
    code, output = verify_cli(run_id, keys["public"])
    assert code == 1 and output.splitlines() == [f"tampered: run {run_id}: changed after signing:",
                                                 *(f"  {line}" for line in expected)]


def test_without_a_key_nothing_changes(model: dict[str, str], frame: pd.DataFrame, keys: dict[str, Path],
                                       mlflow_experiment: str) -> None:
    client = MlflowClient()
    run_id = evaluate(model["uri"], frame, trusted=keys["public"])  # trusted keys alone sign nothing
    run = client.get_run(run_id)
    assert schema.TAG_SIGNATURE not in run.data.tags
    assert schema.SIGNED_MANIFEST_ARTIFACT not in {a.path for a in client.list_artifacts(run_id, "green")}
    assert schema.INFERENCE_ENERGY_PER_PREDICTION_J in run.data.metrics
    code, output = verify_cli(run_id, keys["public"])
    assert code == 1 and "unsigned: run" in output and "not signed: the run has no green.signature tag" in output


@pytest.mark.parametrize("bad", ["missing", "public-key"])
def test_an_unusable_key_fails_before_the_model_is_measured(model: dict[str, str], frame: pd.DataFrame,
                                                           keys: dict[str, Path], mlflow_experiment: str,
                                                           tmp_path: Path, bad: str) -> None:
    key = tmp_path / "missing.key" if bad == "missing" else keys["public"]
    with mlflow.start_run() as run:
        pass
    with pytest.raises(SignatureError) as caught:
        evaluate(model["uri"], frame, signing=key, run_id=run.info.run_id)
    assert isinstance(caught.value, ConfigError) and str(key) in str(caught.value)
    metrics = MlflowClient().get_run(run.info.run_id).data.metrics
    assert not any(k.startswith("green/") for k in metrics)  # nothing measured, nothing logged


def test_a_signed_training_run_is_signed_again_after_the_evaluation(frame: pd.DataFrame, keys: dict[str, Path],
                                                                    mlflow_experiment: str, tmp_path: Path) -> None:
    client = MlflowClient()
    run_id, uri = train(frame, signing=keys["private"])
    before = manifest_of(client, run_id, tmp_path / "before")
    assert before.artifacts[schema.INFERENCE_REPORT_ARTIFACT] is None and before.artifacts[schema.REPORT_ARTIFACT]
    assert evaluate(uri, frame, signing=keys["private"], run_id=run_id) == run_id
    verification = verify_run(client, run_id, trusted(keys["public"]))
    assert verification.ok, verification.reason
    after = manifest_of(client, run_id, tmp_path / "after")
    assert after.metrics[schema.ENERGY_KWH] == before.metrics[schema.ENERGY_KWH]  # the training's values, still signed
    assert schema.INFERENCE_ENERGY_PER_PREDICTION_J in after.metrics
    assert after.artifacts[schema.REPORT_ARTIFACT] == before.artifacts[schema.REPORT_ARTIFACT]
    assert after.artifacts[schema.INFERENCE_REPORT_ARTIFACT] is not None


def test_the_training_hosts_signature_is_checked_with_the_trusted_keys(frame: pd.DataFrame, keys: dict[str, Path],
                                                                       mlflow_experiment: str,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Trained and signed on one host, evaluated on another with its own key."""
    client = MlflowClient()
    both = trusted(keys["public"], keys["training_public"])
    run_id, uri = train(frame, signing=keys["training"])
    evaluate(uri, frame, signing=keys["private"], trusted=keys["training_public"], run_id=run_id)
    verification = verify_run(client, run_id, both)
    assert verification.ok and verification.key_id == SigningKey.from_file(keys["private"]).key_id
    # without the training host's public key the evaluator cannot tell the training values are intact: not signed
    other, other_uri = train(frame, signing=keys["training"])
    with caplog.at_level(logging.WARNING):
        evaluate(other_uri, frame, signing=keys["private"], run_id=other)
    assert f"not signing run {other}" in caplog.text and "its earlier signature does not verify" in caplog.text
    verification = verify_run(client, other, both)
    assert not verification.ok and schema.INFERENCE_ENERGY_PER_PREDICTION_J in verification.changed_keys


def test_the_evaluator_never_signs_training_values_it_did_not_measure(model: dict[str, str], frame: pd.DataFrame,
                                                                     keys: dict[str, Path], mlflow_experiment: str,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    client = MlflowClient()
    # an unsigned run with typed-in training figures, then an evaluation by a host that holds a key
    with mlflow.start_run() as forged:
        mlflow.log_metric(schema.ENERGY_KWH, 1e-12)
        mlflow.set_tags({schema.TAG_ESTIMATED: "false", schema.TAG_METERS: "gpu:nvml-counter"})
    with caplog.at_level(logging.WARNING):
        evaluate(model["uri"], frame, signing=keys["private"], run_id=forged.info.run_id)
    assert schema.TAG_SIGNATURE not in client.get_run(forged.info.run_id).data.tags
    assert "it holds green values this evaluation did not measure" in caplog.text
    assert f"({schema.TAG_ESTIMATED}, {schema.TAG_METERS}, {schema.ENERGY_KWH})" in caplog.text
    # a signed training changed by someone else before the evaluation: not signed over either
    caplog.clear()
    run_id, uri = train(frame, signing=keys["private"])
    client.log_metric(run_id, schema.ENERGY_KWH, 1e-12, step=99)
    with caplog.at_level(logging.WARNING):
        evaluate(uri, frame, signing=keys["private"], run_id=run_id)
    assert f"not signing run {run_id}" in caplog.text and f"{schema.ENERGY_KWH}: signed" in caplog.text
    verification = verify_run(client, run_id, trusted(keys["public"]))
    assert not verification.ok and schema.ENERGY_KWH in verification.changed_keys


def test_evaluating_again_in_a_signed_evaluation_run_signs_it_again(model: dict[str, str], frame: pd.DataFrame,
                                                                    keys: dict[str, Path], mlflow_experiment: str,
                                                                    tmp_path: Path) -> None:
    client = MlflowClient()
    run_id = evaluate(model["uri"], frame, signing=keys["private"])
    first = manifest_of(client, run_id, tmp_path / "first")
    assert evaluate(model["uri"], frame, signing=keys["private"], run_id=run_id) == run_id
    second = manifest_of(client, run_id, tmp_path / "second")
    assert verify_run(client, run_id, trusted(keys["public"])).ok
    assert second.artifacts[schema.INFERENCE_REPORT_ARTIFACT] != first.artifacts[schema.INFERENCE_REPORT_ARTIFACT]
