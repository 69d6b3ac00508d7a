"""Inference gate rules: pure on Evidence, then ``check`` and ``mlflow-green gate`` on a real sqlite store.

The evaluation is found through the version's ``green.inference_run`` tag (else the source run
when it was evaluated in-run); a missing or impossible figure never passes.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from mlflow_green.cli import main as cli
from mlflow_green.errors import PolicyError
from mlflow_green.gates import Evidence, Rules, check, evaluate, loads_policy
from mlflow_green.gates.inference_evidence import InferenceEvidence
from mlflow_green.record import schema
from mlflow_green.testing.registry import register_version

J = schema.INFERENCE_ENERGY_PER_PREDICTION_J
LAT = schema.INFERENCE_LATENCY_MS
POLICY = """
[aliases.champion]
max_inference_energy_per_prediction_j = 0.002
max_inference_latency_ms = 5
require_inference_measurement = true

[aliases.production]
require_inference_measurement = true
measured_only = true
"""


def found(j: float | None = 0.001, latency: float | None = 2.0, estimated: str = "false") -> InferenceEvidence:
    metrics = {k: v for k, v in ((J, j), (LAT, latency)) if v is not None}
    tags = {schema.TAG_INFERENCE_BATCH_SIZE: "32", schema.TAG_INFERENCE_ESTIMATED: estimated,
            schema.TAG_INFERENCE_METERS: "cpu:rapl"}
    return InferenceEvidence("e1", metrics, tags, schema.TAG_INFERENCE_RUN)


def outcome(rules: Rules, inference: InferenceEvidence | None) -> dict[str, tuple[str, str]]:
    return {r.rule: (r.status, r.detail) for r in evaluate(rules, Evidence(run_id="r1", inference=inference))}


CHAMPION = Rules(max_inference_energy_per_prediction_j=0.002, max_inference_latency_ms=5.0,
                 require_inference_measurement=True)


def test_within_limits_passes_and_the_details_name_batch_size_and_run() -> None:
    result = outcome(CHAMPION, found())
    assert result == {
        "max_inference_energy_per_prediction_j": ("PASS", "1 mJ <= limit 2 mJ (batch size 32, run e1)"),
        "max_inference_latency_ms": ("PASS", "2 ms <= limit 5 ms (batch size 32, run e1)"),
        "require_inference_measurement": (
            "PASS", "measured by green.inference_run (batch size 32, run e1, green.inference_meters=cpu:rapl)"),
    }


def test_limits_are_inclusive_and_over_the_limit_fails() -> None:
    assert outcome(CHAMPION, found(j=0.002, latency=5.0))["max_inference_latency_ms"][0] == "PASS"
    result = outcome(CHAMPION, found(j=0.0031, latency=7.5))
    assert result["max_inference_energy_per_prediction_j"] == ("FAIL", "3.1 mJ > limit 2 mJ (batch size 32, run e1)")
    assert result["max_inference_latency_ms"][0] == "FAIL"


@pytest.mark.parametrize(
    ("j", "message"),
    [(0.0, "is impossible (a prediction always costs"), (-1.0, "impossible (negative"), (float("nan"), "NaN"),
     (float("inf"), "infinite")],
)
def test_impossible_figures_fail(j: float, message: str) -> None:
    status, detail = outcome(CHAMPION, found(j=j))["max_inference_energy_per_prediction_j"]
    assert status == "FAIL" and message in detail


def test_no_evaluation_fails_every_inference_rule_with_what_to_do() -> None:
    missing = InferenceEvidence(None, missing="no inference measurement: version 3 has no green.inference_run tag")
    result = outcome(CHAMPION, missing)
    assert {status for status, _ in result.values()} == {"FAIL"}
    assert all(detail.startswith("no inference measurement") for _, detail in result.values())
    latency_missing = outcome(CHAMPION, found(latency=None))["max_inference_latency_ms"]
    assert latency_missing == ("FAIL", f"not logged ({LAT}) in run e1")


def test_measured_only_makes_require_inference_measurement_refuse_estimates() -> None:
    strict = Rules(require_inference_measurement=True, measured_only=True)
    status, detail = outcome(strict, found(estimated="true"))["require_inference_measurement"]
    assert status == "FAIL" and "inference energy is estimated (green.inference_estimated=true" in detail
    assert outcome(Rules(require_inference_measurement=True), found(estimated="true"))[
        "require_inference_measurement"][0] == "PASS"
    assert outcome(Rules(require_inference_measurement=False), None)["require_inference_measurement"][0] == "SKIP"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[default]\nmax_inference_energy_per_prediction_j = -1", r"must be a finite number >= 0 \(J\)"),
        ("[default]\nmax_inference_latency_ms = '5'", r"must be a finite number >= 0 \(ms\)"),
        ("[default]\nrequire_inference_measurement = 1", "must be true or false"),
        ("[default]\nmax_inference_energy_j = 1", "unknown key"),
    ],
)
def test_malformed_inference_rules_are_policy_errors(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        loads_policy(text, source="p.toml")


# --- real store: check() and the CLI -------------------------------------------------------------------


def evaluation_run(client: MlflowClient, experiment_id: str, j: float, latency: float, of: str,
                   estimated: str = "false") -> str:
    """A run as the green evaluator leaves it: the sweep at step = batch size, the inference tags."""
    run_id = client.create_run(experiment_id, run_name="evaluation").info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(J, j * 8, now, 1), Metric(J, j, now + 1, 32), Metric(LAT, latency, now + 1, 32)]
    tags = {schema.TAG_INFERENCE_BATCH_SIZE: "32", schema.TAG_INFERENCE_ESTIMATED: estimated,
            schema.TAG_INFERENCE_METERS: "cpu:rapl", schema.TAG_INFERENCE_MODEL_RUN: of}
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
    client.set_terminated(run_id)
    return run_id


@pytest.fixture()
def gated(mlflow_experiment: str, tracking_uri: str, tmp_path: Path) -> dict[str, Any]:
    client = MlflowClient(tracking_uri)
    name = f"inference-gate-{uuid.uuid4().hex[:8]}"
    training = {schema.ENERGY_KWH: 0.01}
    versions = {key: register_version(client, mlflow_experiment, name, training, {schema.TAG_ESTIMATED: "false"})
                for key in ("lean", "heavy", "never")}
    for key, j, latency in (("lean", 0.001, 2.0), ("heavy", 0.01, 9.0)):
        source = client.get_model_version(name, versions[key]).run_id
        client.set_model_version_tag(name, versions[key], schema.TAG_INFERENCE_RUN,
                                     evaluation_run(client, mlflow_experiment, j, latency, of=source))
    # evaluated inside its own training run: no tag needed
    versions["inrun"] = register_version(client, mlflow_experiment, name, {**training, J: 0.0015, LAT: 1.0},
                                         {schema.TAG_INFERENCE_BATCH_SIZE: "32",
                                          schema.TAG_INFERENCE_ESTIMATED: "true"})
    policy = tmp_path / "green-policy.toml"
    policy.write_text(POLICY)
    return {"client": client, "name": name, "versions": versions, "policy": policy, "uri": tracking_uri}


def test_check_finds_the_evaluation_through_the_version_tag(gated: dict[str, Any]) -> None:
    name, v, client = gated["name"], gated["versions"], gated["client"]
    lean = check(name, v["lean"], gated["policy"], alias="champion", client=client)
    assert lean.passed, lean.report()
    heavy = check(name, v["heavy"], gated["policy"], alias="champion", client=client)
    assert not heavy.passed
    assert [r.rule for r in heavy.failed] == ["max_inference_energy_per_prediction_j", "max_inference_latency_ms"]
    tags = client.get_model_version(name, v["heavy"]).tags
    assert tags[schema.TAG_GATE] == "failed"
    assert "max_inference_energy_per_prediction_j: 10 mJ > limit 2 mJ (batch size 32" in tags[schema.TAG_GATE_REASONS]
    never = check(name, v["never"], gated["policy"], alias="champion", client=client)
    assert {r.rule for r in never.failed} == {"max_inference_energy_per_prediction_j", "max_inference_latency_ms",
                                              "require_inference_measurement"}
    assert f'evaluate it with mlflow.models.evaluate("models:/{name}/{v["never"]}"' in never.failed[0].detail


def test_an_in_run_evaluation_counts_and_measured_only_reads_its_provenance(gated: dict[str, Any]) -> None:
    name, v, client = gated["name"], gated["versions"], gated["client"]
    assert check(name, v["inrun"], gated["policy"], alias="champion", client=client).passed
    production = check(name, v["inrun"], gated["policy"], alias="production", client=client)
    failed = {r.rule: r.detail for r in production.failed}
    assert "inference energy is estimated" in failed["require_inference_measurement"]


def test_a_deleted_evaluation_run_fails_the_gate(gated: dict[str, Any]) -> None:
    name, v, client = gated["name"], gated["versions"], gated["client"]
    client.set_model_version_tag(name, v["lean"], schema.TAG_INFERENCE_RUN, "f" * 32)
    result = check(name, v["lean"], gated["policy"], alias="champion", client=client)
    assert not result.passed
    assert result.failed[0].detail == f"evaluation run {'f' * 32} (green.inference_run) not found"


def test_an_evaluation_of_another_model_or_a_garbled_tag_is_refused(gated: dict[str, Any]) -> None:
    name, v, client = gated["name"], gated["versions"], gated["client"]
    cheap = client.get_model_version(name, v["lean"]).tags[schema.TAG_INFERENCE_RUN]
    client.set_model_version_tag(name, v["never"], schema.TAG_INFERENCE_RUN, cheap)  # borrow lean's evaluation
    borrowed = check(name, v["never"], gated["policy"], alias="champion", client=client)
    assert not borrowed.passed
    assert "measured the model of run" in borrowed.failed[0].detail and "not this version's" in borrowed.failed[0].detail
    client.set_model_version_tag(name, v["never"], schema.TAG_INFERENCE_RUN, "x' OR 1=1; --\n")
    garbled = check(name, v["never"], gated["policy"], alias="champion", client=client)
    assert garbled.failed[0].detail.startswith("green.inference_run is not a run id: ")


def test_cli_gate_exit_codes_and_report(gated: dict[str, Any]) -> None:
    runner = CliRunner()
    base = ["gate", "-m", gated["name"], "--policy", str(gated["policy"]), "--alias", "champion",
            "--tracking-uri", gated["uri"]]
    ok = runner.invoke(cli, [*base, "-v", gated["versions"]["lean"]])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(cli, [*base, "-v", gated["versions"]["never"]])
    assert bad.exit_code == 1
    assert "require_inference_measurement" in bad.output and "no inference measurement" in bad.output
