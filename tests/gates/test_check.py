"""gates.check on real registered model versions in a tmp sqlite store: every rule passing and failing."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import mlflow_green
from mlflow_green.errors import PolicyError
from mlflow_green.gates import GateResult, check, loads_policy
from mlflow_green.gates.plausibility import fmt
from mlflow_green.gates.rules import RULE_SPECS
from mlflow_green.measure.readings import Provenance
from mlflow_green.record import schema
from mlflow_green.testing import FakeMeter

PREDICT_J = schema.phase_energy_per_sample_key("predict")
MEASURED = {schema.TAG_ESTIMATED: "false", schema.TAG_METERS: "gpu:nvml-counter,cpu:rapl"}

# rule, limit, metric it reads, a passing value, a failing value
NUMERIC_RULES = [
    ("max_energy_kwh", 0.5, schema.ENERGY_KWH, 0.4, 0.8),
    ("max_emissions_kg", 0.1, schema.EMISSIONS_KG, 0.05, 0.2),
    ("min_accuracy_per_kwh", 1000.0, schema.ACCURACY_PER_KWH, 1500.0, 900.0),
    ("max_energy_per_sample_predict_j", 0.01, PREDICT_J, 0.005, 0.02),
    ("max_model_size_bytes", 1_000_000.0, schema.MODEL_SIZE_BYTES, 500_000.0, 2_000_000.0),
    ("min_sparsity", 0.5, schema.MODEL_SPARSITY, 0.6, 0.3),
]


def _tags(client: MlflowClient, model: str, version: str) -> dict[str, str]:
    return dict(client.get_model_version(model, version).tags)


@pytest.mark.parametrize(("rule", "limit", "metric", "good", "bad"), NUMERIC_RULES, ids=[r[0] for r in NUMERIC_RULES])
def test_each_numeric_rule_passes_and_fails(
    client: MlflowClient, model_name: str, make_version, rule: str, limit: float, metric: str, good: float, bad: float
) -> None:
    policy = loads_policy(f"[default]\n{rule} = {limit}")
    passing, failing = make_version({metric: good}), make_version({metric: bad})

    ok = check(model_name, passing, policy, client=client)
    assert ok.passed
    assert [(r.rule, r.passed, r.actual, r.limit) for r in ok.rules] == [(rule, True, good, limit)]
    assert _tags(client, model_name, passing)[schema.TAG_GATE] == "passed"

    ko = check(model_name, failing, policy, client=client)
    assert not ko.passed
    assert [(r.rule, r.actual, r.limit) for r in ko.failed] == [(rule, bad, limit)]
    tags = _tags(client, model_name, failing)
    assert tags[schema.TAG_GATE] == "failed"
    assert tags[schema.TAG_GATE_REASONS].startswith(f"{rule}: ")
    assert fmt(bad, RULE_SPECS[rule].unit) in tags[schema.TAG_GATE_REASONS]  # written as every surface writes it


@pytest.mark.parametrize(("rule", "limit", "metric", "good", "bad"), NUMERIC_RULES, ids=[r[0] for r in NUMERIC_RULES])
def test_a_limit_is_inclusive(
    client: MlflowClient, model_name: str, make_version, rule: str, limit: float, metric: str, good: float, bad: float
) -> None:
    version = make_version({metric: limit})
    assert check(model_name, version, loads_policy(f"[default]\n{rule} = {limit}"), client=client).passed


@pytest.mark.parametrize("rule", [r[0] for r in NUMERIC_RULES if r[2] != PREDICT_J])
def test_a_missing_measurement_never_passes(client: MlflowClient, model_name: str, make_version, rule: str) -> None:
    version = make_version({"accuracy": 0.9}, MEASURED)
    result = check(model_name, version, loads_policy(f"[default]\n{rule} = 1"), client=client)
    assert not result.passed
    (failed,) = result.failed
    assert failed.actual is None
    assert failed.detail.startswith("not logged (green/")


def test_inference_energy_is_skipped_when_not_logged_unless_required(
    client: MlflowClient, model_name: str, make_version
) -> None:
    version = make_version({schema.ENERGY_KWH: 0.1})
    optional = check(model_name, version, loads_policy("[default]\nmax_energy_per_sample_predict_j = 0.01"), client=client)
    assert optional.passed
    (rule,) = optional.rules
    assert rule.skipped and rule.status == "SKIP" and "not logged" in rule.detail
    assert "skipped" in _tags(client, model_name, version)[schema.TAG_GATE_REASONS]

    required = loads_policy("[default]\nmax_energy_per_sample_predict_j = 0.01\nrequire_inference_energy = true")
    result = check(model_name, version, required, client=client)
    assert not result.passed
    assert result.failed[0].detail == f"not logged ({PREDICT_J})"


@pytest.mark.parametrize(
    ("tags", "passed", "words"),
    [
        (MEASURED, True, "measured (green.estimated=false, green.meters=gpu:nvml-counter,cpu:rapl)"),
        ({schema.TAG_ESTIMATED: "true", schema.TAG_METERS: "cpu:estimate,ram:estimate"}, False, "energy is estimated"),
        ({}, False, "not logged (no green.estimated tag"),
        ({schema.TAG_ESTIMATED: "maybe"}, False, "unrecognised"),
    ],
    ids=["measured", "estimated", "untagged", "garbled"],
)
def test_measured_only(client: MlflowClient, model_name: str, make_version, tags: dict, passed: bool, words: str) -> None:
    version = make_version({schema.ENERGY_KWH: 0.1}, tags)
    result = check(model_name, version, loads_policy("[default]\nmeasured_only = true"), client=client)
    assert result.passed is passed
    assert words in result.rules[0].detail


def test_measured_only_false_allows_estimates(client: MlflowClient, model_name: str, make_version) -> None:
    version = make_version({schema.ENERGY_KWH: 0.1}, {schema.TAG_ESTIMATED: "true"})
    result = check(model_name, version, loads_policy("[default]\nmax_energy_kwh = 1\nmeasured_only = false"), client=client)
    assert result.passed and [r.status for r in result.rules] == ["PASS", "SKIP"]


@pytest.mark.parametrize(("provenance", "passed"), [("estimate", False), ("counter", True)])
def test_estimated_energy_from_a_tracked_run_is_refused_when_measurement_is_required(
    client: MlflowClient, model_name: str, provenance: Provenance, passed: bool
) -> None:
    """End to end: mlflow_green.track() logs the run, the gate reads what it logged."""
    meter = FakeMeter({"cpu:0": 40.0, "ram:0": 5.0}, name="fake", provenance=provenance)
    with mlflow_green.track(meters=[meter]) as t:
        t.log_step(0, samples=10)
    client.create_registered_model(model_name)
    version = client.create_model_version(model_name, f"runs:/{t.run_id}/model", run_id=t.run_id).version
    policy = loads_policy("[aliases.champion]\nmeasured_only = true\nmax_energy_kwh = 1.0")
    result = check(model_name, version, policy, alias="champion", client=client)
    assert result.passed is passed and t.measurement is not None
    assert [r.rule for r in result.failed] == ([] if passed else ["measured_only"])
    assert result.rules[0].actual == pytest.approx(t.measurement.energy_j / 3.6e6)


def test_a_version_without_a_source_run_fails_every_rule(client: MlflowClient, model_name: str, make_version) -> None:
    version = make_version(with_run=False)
    policy = loads_policy("[default]\nmax_energy_kwh = 1\nmeasured_only = true\nmax_energy_per_sample_predict_j = 1")
    result = check(model_name, version, policy, client=client)
    assert not result.passed
    assert [r.rule for r in result.failed] == ["max_energy_kwh", "max_energy_per_sample_predict_j", "measured_only"]
    assert all("no source run" in r.detail for r in result.failed)
    assert result.run_id is None


BEAT = "[aliases.champion]\nbeat_current_by_percent = 5\n[stages.production]\nbeat_current_by_percent = 5"


def test_beat_current_champion_by_percent(client: MlflowClient, model_name: str, make_version) -> None:
    policy = loads_policy(BEAT)
    first = make_version({schema.ACCURACY_PER_KWH: 1000.0})
    alone = check(model_name, first, policy, alias="champion", client=client)
    assert alone.passed and "no version holds alias champion yet" in alone.rules[0].detail
    client.set_registered_model_alias(model_name, "champion", first)

    same = check(model_name, first, policy, alias="champion", client=client)
    assert same.passed and "already holds" in same.rules[0].detail

    slightly_better = make_version({schema.ACCURACY_PER_KWH: 1040.0})
    result = check(model_name, slightly_better, policy, alias="champion", client=client)
    assert not result.passed
    rule = result.failed[0]
    assert (rule.rule, rule.actual, rule.limit) == ("beat_current_by_percent", 1040.0, pytest.approx(1050.0))
    assert f"version {first}, which holds alias champion" in rule.detail

    much_better = make_version({schema.ACCURACY_PER_KWH: 1100.0})
    assert check(model_name, much_better, policy, alias="champion", client=client).passed

    unmeasured = make_version({schema.ENERGY_KWH: 0.1})
    assert check(model_name, unmeasured, policy, alias="champion", client=client).failed[0].detail.startswith("not logged")


def test_an_unmeasured_champion_does_not_block_a_measured_successor(
    client: MlflowClient, model_name: str, make_version
) -> None:
    old = make_version({schema.ENERGY_KWH: 0.1})
    client.set_registered_model_alias(model_name, "champion", old)
    new = make_version({schema.ACCURACY_PER_KWH: 10.0})
    result = check(model_name, new, loads_policy(BEAT), alias="champion", client=client)
    assert result.passed and "has no green/accuracy_per_kwh logged" in result.rules[0].detail


def test_beat_current_stage_holder(client: MlflowClient, model_name: str, make_version) -> None:
    policy = loads_policy(BEAT)
    first = make_version({schema.ACCURACY_PER_KWH: 1000.0})
    client.transition_model_version_stage(model_name, first, "Production")
    worse = make_version({schema.ACCURACY_PER_KWH: 1010.0})
    result = check(model_name, worse, policy, stage="production", client=client)
    assert not result.passed and result.stage == "Production"
    assert "holds stage Production" in result.failed[0].detail
    better = make_version({schema.ACCURACY_PER_KWH: 1200.0})
    assert check(model_name, better, policy, stage="Production", client=client).passed


def test_beat_current_without_an_alias_is_skipped(client: MlflowClient, model_name: str, make_version) -> None:
    version = make_version({schema.ACCURACY_PER_KWH: 1.0})
    result = check(model_name, version, loads_policy("[default]\nbeat_current_by_percent = 5"), client=client)
    assert result.passed and result.rules[0].skipped


POLICY = """
[default]
measured_only = true
max_energy_kwh = 2.0

[aliases.champion]
max_energy_kwh = 0.5
min_accuracy_per_kwh = 1000

[aliases.staging]
measured_only = false
"""


def test_aliases_override_the_default(client: MlflowClient, model_name: str, make_version) -> None:
    policy = loads_policy(POLICY, source="green-policy.toml")
    version = make_version({schema.ENERGY_KWH: 1.0, schema.ACCURACY_PER_KWH: 900.0}, {schema.TAG_ESTIMATED: "true"})

    staging = check(model_name, version, policy, alias="staging", client=client)
    assert staging.passed
    assert [r.rule for r in staging.rules] == ["max_energy_kwh", "measured_only"]

    champion = check(model_name, version, policy, alias="champion", client=client)
    assert [r.rule for r in champion.failed] == ["max_energy_kwh", "min_accuracy_per_kwh", "measured_only"]
    tags = _tags(client, model_name, version)
    assert tags[schema.TAG_GATE] == "failed"
    assert tags[schema.TAG_GATE_POLICY].startswith("green-policy.toml [aliases.champion] sha256:")
    assert tags[schema.TAG_GATE_REASONS].split("; ")[0] == "max_energy_kwh: 1 kWh > limit 500 Wh"


def test_an_alias_the_policy_does_not_cover_is_a_policy_error(client: MlflowClient, model_name: str, make_version) -> None:
    version = make_version({schema.ENERGY_KWH: 1.0})
    with pytest.raises(PolicyError, match=r"no rules for alias 'canary' \(covered: champion, staging\)"):
        check(model_name, version, loads_policy(POLICY), alias="canary", client=client)
    wildcard = loads_policy(POLICY + '\n[aliases."*"]\nmax_energy_kwh = 0.1')
    assert check(model_name, version, wildcard, alias="canary", client=client).failed[0].limit == 0.1


def test_check_reads_a_policy_file_and_can_leave_tags_alone(
    client: MlflowClient, model_name: str, make_version, tmp_path: Path
) -> None:
    path = tmp_path / "green-policy.toml"
    path.write_text("[default]\nmax_energy_kwh = 0.5\n")
    version = make_version({schema.ENERGY_KWH: 0.2})
    result = check(model_name, int(version), path, client=client, write_tags=False)
    assert isinstance(result, GateResult) and result.passed and result.version == version
    assert schema.TAG_GATE not in _tags(client, model_name, version)


def test_check_uses_the_current_tracking_uri_by_default(model_name: str, make_version) -> None:
    version = make_version({schema.ENERGY_KWH: 0.2})
    assert check(model_name, version, loads_policy("[default]\nmax_energy_kwh = 0.5")).passed


def test_an_unknown_version_raises_mlflow_s_error(client: MlflowClient, model_name: str, make_version) -> None:
    make_version({schema.ENERGY_KWH: 0.2})
    with pytest.raises(MlflowException, match="not found|does not exist|RESOURCE_DOES_NOT_EXIST"):
        check(model_name, "99", loads_policy("[default]\nmax_energy_kwh = 0.5"), client=client)


def test_the_report_names_every_rule_with_value_and_limit(client: MlflowClient, model_name: str, make_version) -> None:
    version = make_version({schema.ENERGY_KWH: 1.0, schema.ACCURACY_PER_KWH: 1200.0}, MEASURED)
    result = check(model_name, version, loads_policy(POLICY, source="green-policy.toml"), alias="champion", client=client)
    report = result.report()
    assert report.splitlines()[0] == f"Gate FAILED: model '{model_name}' version {version} for alias champion"
    assert "  FAIL  max_energy_kwh        1 kWh > limit 500 Wh" in report
    assert "  PASS  min_accuracy_per_kwh  1,200 per kWh >= minimum 1,000 per kWh" in report
    assert report.splitlines()[-1] == "1 of 3 rules failed: max_energy_kwh"
    assert result.to_dict()["failed_rules"] == ["max_energy_kwh"]
