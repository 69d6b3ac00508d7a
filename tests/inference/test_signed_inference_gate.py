"""``require_signed`` also verifies the inference evaluation when the rules read inference figures (real
sqlite store, real signed trainings and real ``green`` evaluations, the gate's ``check``): a signed
evaluation passes; an unsigned, untrusted, tampered, forged or copied one fails naming the evaluation
run and what changed, in the training's words; another model's evaluation is refused by the
``green.inference_model_run`` link; figures evaluated inside the training run are covered by its own
signature; without an inference rule the evaluation is not read."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from signed_evaluations import digits_frame, evaluate, forged_evaluation, register, train

from mlflow_green.gates import check, loads_policy
from mlflow_green.gates.evidence import Evidence
from mlflow_green.gates.inference_evidence import InferenceEvidence
from mlflow_green.gates.rule_checks import require_signed
from mlflow_green.gates.rules import Rules
from mlflow_green.record import schema
from mlflow_green.record.signing import SigningKey, TrustedKeys, Verification, generate_key_pair

POLICY = loads_policy("""
[aliases.champion]
require_signed = true
require_inference_measurement = true
max_inference_energy_per_prediction_j = 1.0

[aliases.strict]
require_signed = true
max_inference_energy_per_prediction_j = 1e-9

[aliases.strict_unsigned]
max_inference_energy_per_prediction_j = 1e-9

[aliases.training_only]
require_signed = true
max_energy_kwh = 1
""")


@pytest.fixture(scope="module")
def zoo(tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two signed trainings of different models, each registered as version 1 of its own model."""
    mlflow.set_tracking_uri(tracking_uri)
    location = tmp_path_factory.mktemp("signed-gate-artifacts").as_uri()
    experiment_id = mlflow.create_experiment(f"signed-inference-gate-{uuid.uuid4().hex[:6]}", artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    private, public = generate_key_pair(tmp_path_factory.mktemp("trusted"))
    rogue, _ = generate_key_pair(tmp_path_factory.mktemp("rogue"))
    frame = digits_frame()
    zoo: dict[str, Any] = {"private": private, "rogue": rogue, "trusted": TrustedKeys.from_paths([public]),
                           "frame": frame, "experiment_id": experiment_id}
    for key, iterations in (("a", 200), ("b", 30)):
        run_id, uri = train(frame, signing=private, iterations=iterations)
        name = f"signed-gate-{key}-{uuid.uuid4().hex[:6]}"
        zoo[key] = {"run_id": run_id, "uri": uri, "name": name, "version": register(uri, name)}
    return zoo


def gate(zoo: dict[str, Any], alias: str, model: str = "a") -> dict[str, Any]:
    """The gate's result for version 1 of ``model``, by rule name."""
    result = check(zoo[model]["name"], zoo[model]["version"], POLICY, alias=alias, client=MlflowClient(),
                   write_tags=False, trusted_keys=zoo["trusted"])
    return {r.rule: r for r in result.rules} | {"passed": result.passed}


def evaluation_of(zoo: dict[str, Any], model: str = "a", **signing: Path | None) -> str:
    """A green evaluation of ``model`` (a run of its own), which its version now points at."""
    run_id = evaluate(zoo[model]["uri"], zoo["frame"], **signing)
    MlflowClient().set_model_version_tag(zoo[model]["name"], zoo[model]["version"], schema.TAG_INFERENCE_RUN, run_id)
    return run_id


def key_id(path: Path) -> str:
    return SigningKey.from_file(path).key_id


def test_a_signed_evaluation_passes_and_both_signatures_are_named(zoo: dict[str, Any]) -> None:
    run_id = evaluation_of(zoo, signing=zoo["private"])
    result = gate(zoo, "champion")
    assert result["passed"], result
    signed = f"signed by key {key_id(zoo['private'])}; no signed value changed since"
    assert result["require_signed"].detail == f"{signed}; evaluation run {run_id} (green.inference_run): {signed}"


@pytest.mark.parametrize("attack", ["unsigned", "unknown-key", "tampered-metric", "tampered-report", "forged-run",
                                    "copied-signature"])
def test_an_evaluation_that_is_not_signed_as_measured_fails_naming_it(zoo: dict[str, Any], attack: str) -> None:
    client = MlflowClient()
    model = zoo["a"]
    if attack == "unsigned":
        run_id = evaluation_of(zoo)
        expected = "not signed: the run has no green.signature tag"
    elif attack == "unknown-key":
        run_id = evaluation_of(zoo, signing=zoo["rogue"])
        expected = f"signed by key {key_id(zoo['rogue'])}, which is not trusted (trusted: {zoo['trusted'].ids[0]})"
    elif attack == "tampered-metric":  # the reported forgery: a tiny J/prediction over a measured evaluation
        run_id = evaluation_of(zoo, signing=zoo["private"])
        measured = client.get_run(run_id).data.metrics[schema.INFERENCE_ENERGY_PER_PREDICTION_J]
        assert not gate(zoo, "strict_unsigned")["passed"]  # the honest figure fails the strict limit
        client.log_metric(run_id, schema.INFERENCE_ENERGY_PER_PREDICTION_J, 1e-12, step=10**6)
        assert gate(zoo, "strict_unsigned")["passed"]  # without signatures, the forgery gets through
        expected = f"changed after signing: {schema.INFERENCE_ENERGY_PER_PREDICTION_J}: signed {measured:.6g}, now 1e-12"
        assert not gate(zoo, "strict")["passed"]
    elif attack == "tampered-report":
        run_id = evaluation_of(zoo, signing=zoo["private"])
        client.log_dict(run_id, {"kind": "inference", "results": []}, schema.INFERENCE_REPORT_ARTIFACT)
        expected = f"changed after signing: {schema.INFERENCE_REPORT_ARTIFACT}: changed after signing"
    elif attack == "forged-run":  # a hand-made run that claims to evaluate this version's model
        run_id = forged_evaluation(client, zoo["experiment_id"], model["run_id"])
        client.set_model_version_tag(model["name"], model["version"], schema.TAG_INFERENCE_RUN, run_id)
        assert gate(zoo, "strict_unsigned")["passed"]
        expected = "not signed: the run has no green.signature tag"
    else:  # a genuine evaluation's signature and manifest copied onto the forged run
        genuine = evaluation_of(zoo, signing=zoo["private"])
        run_id = forged_evaluation(client, zoo["experiment_id"], model["run_id"])
        _copy_signature(client, genuine, run_id)
        client.set_model_version_tag(model["name"], model["version"], schema.TAG_INFERENCE_RUN, run_id)
        expected = f"the signature was made for run {genuine}, not this run (copied from another run)"
    result = gate(zoo, "champion")
    assert not result["passed"]
    detail = result["require_signed"].detail
    training = f"signed by key {key_id(zoo['private'])}; no signed value changed since"
    assert detail.startswith(f"{training}; evaluation run {run_id} (green.inference_run): {expected}"), detail


def _copy_signature(client: MlflowClient, source: str, target: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        text = Path(client.download_artifacts(source, schema.SIGNED_MANIFEST_ARTIFACT, folder)).read_text()
    client.log_text(target, text, schema.SIGNED_MANIFEST_ARTIFACT)
    client.set_tag(target, schema.TAG_SIGNATURE, client.get_run(source).data.tags[schema.TAG_SIGNATURE])


def test_another_models_signed_evaluation_is_refused_by_the_link_check(zoo: dict[str, Any]) -> None:
    other = evaluation_of(zoo, "b", signing=zoo["private"])
    MlflowClient().set_model_version_tag(zoo["a"]["name"], zoo["a"]["version"], schema.TAG_INFERENCE_RUN, other)
    result = gate(zoo, "champion")
    assert not result["passed"]
    link = (f"evaluation run {other} (green.inference_run) measured the model of run {zoo['b']['run_id']}, "
            f"not this version's (run {zoo['a']['run_id']})")
    assert result["max_inference_energy_per_prediction_j"].detail == link
    assert result["require_inference_measurement"].detail == link
    assert result["require_signed"].passed  # its signature is fine: the link is what is wrong


def test_an_in_run_evaluation_is_covered_by_the_training_signature(zoo: dict[str, Any]) -> None:
    client = MlflowClient()
    run_id, uri = train(zoo["frame"], signing=zoo["private"])
    name = f"in-run-{uuid.uuid4().hex[:6]}"
    version = register(uri, name)
    evaluate(uri, zoo["frame"], signing=zoo["private"], run_id=run_id)
    zoo_in_run = {**zoo, "a": {"name": name, "version": version}}
    result = gate(zoo_in_run, "champion")
    assert result["passed"], result
    assert result["require_signed"].detail == f"signed by key {key_id(zoo['private'])}; no signed value changed since"
    assert result["require_inference_measurement"].detail.startswith("measured by source run")
    client.log_metric(run_id, schema.INFERENCE_LATENCY_MS, 0.001, step=10**6)
    detail = gate(zoo_in_run, "champion")["require_signed"].detail
    assert detail.startswith(f"changed after signing: {schema.INFERENCE_LATENCY_MS}: signed "), detail
    assert "evaluation run" not in detail


def test_without_an_inference_rule_the_evaluation_is_not_read(zoo: dict[str, Any]) -> None:
    client = MlflowClient()
    forged = forged_evaluation(client, zoo["experiment_id"], zoo["a"]["run_id"])
    client.set_model_version_tag(zoo["a"]["name"], zoo["a"]["version"], schema.TAG_INFERENCE_RUN, forged)
    result = gate(zoo, "training_only")
    assert result["passed"] and "evaluation run" not in result["require_signed"].detail


# --- the rule itself, on every combination (pure) ----------------------------------------------------------

OK = Verification(True, "signed", "signed by key k1; no signed value changed since", "k1")
UNSIGNED = Verification(False, "unsigned", "not signed: the run has no green.signature tag")
TAMPERED = Verification(False, "tampered", "changed after signing: green/inference_latency_ms: signed 5, now 0.001",
                        "k1", ("green/inference_latency_ms: signed 5, now 0.001",), ("green/inference_latency_ms",))


def _found(signature: Verification | None, run_id: str = "e1", missing: str | None = None) -> InferenceEvidence:
    return InferenceEvidence(run_id, {}, {}, "green.inference_run", missing, signature)


@pytest.mark.parametrize(
    ("training", "inference", "passed", "detail"),
    [
        (OK, None, True, OK.reason),
        (OK, _found(OK), True, f"{OK.reason}; evaluation run e1 (green.inference_run): {OK.reason}"),
        (OK, _found(TAMPERED), False, f"{OK.reason}; evaluation run e1 (green.inference_run): {TAMPERED.reason}"),
        (OK, _found(None), False, f"{OK.reason}; evaluation run e1 (green.inference_run): the signature was not verified"),
        (UNSIGNED, _found(OK), False, UNSIGNED.reason),
        (UNSIGNED, _found(TAMPERED), False, f"{UNSIGNED.reason}; evaluation run e1 (green.inference_run): {TAMPERED.reason}"),
        (OK, _found(None, missing="no inference measurement"), True, OK.reason),
        (TAMPERED, _found(TAMPERED, run_id="r1"), False, TAMPERED.reason),
    ],
    ids=["no-inference", "both-signed", "evaluation-tampered", "evaluation-not-verified", "training-unsigned",
         "both-wrong", "no-evaluation-found", "evaluated-in-run"],
)
def test_require_signed_names_the_source_run_first_then_the_evaluation(
    training: Verification, inference: InferenceEvidence | None, passed: bool, detail: str
) -> None:
    result = require_signed(Rules(require_signed=True), Evidence(run_id="r1", signature=training, inference=inference))
    assert (result.passed, result.detail) == (passed, detail)
