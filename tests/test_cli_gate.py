"""`mlflow-green gate`: exit 0 on a pass, 1 on a failure with a readable report, 2 on a usage or config error."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from mlflow import MlflowClient

from mlflow_green.cli import main
from mlflow_green.record import schema
from mlflow_green.testing.registry import register_version

POLICY = """
[default]
measured_only = true

[aliases.champion]
max_energy_kwh = 0.5
min_accuracy_per_kwh = 1000

[aliases.staging]
max_energy_kwh = 5.0

[stages.Production]
max_energy_kwh = 0.5
"""

GOOD = {schema.ENERGY_KWH: 0.2, schema.ACCURACY_PER_KWH: 4500.0}
WASTEFUL = {schema.ENERGY_KWH: 2.0, schema.ACCURACY_PER_KWH: 450.0}
MEASURED = {schema.TAG_ESTIMATED: "false"}


@pytest.fixture()
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "green-policy.toml"
    path.write_text(POLICY)
    return path


@pytest.fixture()
def model(mlflow_experiment: str, tracking_uri: str) -> tuple[MlflowClient, str, str, str]:
    """A registered model with a good version (1) and a wasteful one (2)."""
    client = MlflowClient(tracking_uri)
    name = f"cli-gate-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    good, wasteful = (_version(client, mlflow_experiment, name, metrics, MEASURED) for metrics in (GOOD, WASTEFUL))
    return client, name, good, wasteful


def _version(client: MlflowClient, experiment_id: str, name: str, metrics: Mapping[str, float], tags: Mapping[str, str]) -> str:
    return register_version(client, experiment_id, name, metrics, tags)


def _gate(tracking_uri: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["gate", "--tracking-uri", tracking_uri, *args])


def test_a_passing_version_exits_0_and_is_tagged(model, policy_file: Path, tracking_uri: str) -> None:
    client, name, good, _ = model
    result = _gate(tracking_uri, "-m", name, "-v", good, "--policy", str(policy_file), "--alias", "champion")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"Gate PASSED: model '{name}' version {good} for alias champion"
    assert "PASS  max_energy_kwh" in result.output
    tags = client.get_model_version(name, good).tags
    assert tags[schema.TAG_GATE] == "passed"
    assert tags[schema.TAG_GATE_POLICY].startswith("green-policy.toml [aliases.champion] sha256:")
    assert not client.get_registered_model(name).aliases  # no --promote: nothing set


def test_a_failing_version_exits_1_with_a_readable_report(model, policy_file: Path, tracking_uri: str) -> None:
    client, name, _, wasteful = model
    result = _gate(tracking_uri, "-m", name, "-v", wasteful, "--policy", str(policy_file), "--alias", "champion")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"Gate FAILED: model '{name}' version {wasteful} for alias champion"
    assert "  FAIL  max_energy_kwh        2 kWh > limit 500 Wh" in lines
    assert "  FAIL  min_accuracy_per_kwh  450 per kWh < minimum 1,000 per kWh" in lines
    assert lines[-1] == "2 of 3 rules failed: max_energy_kwh, min_accuracy_per_kwh"
    assert client.get_model_version(name, wasteful).tags[schema.TAG_GATE] == "failed"


def test_promote_sets_the_alias_only_on_a_pass(model, policy_file: Path, tracking_uri: str) -> None:
    client, name, good, wasteful = model
    refused = _gate(tracking_uri, "-m", name, "-v", wasteful, "--policy", str(policy_file), "--alias", "champion", "--promote")
    assert refused.exit_code == 1
    assert "Not promoted: the gate failed." in refused.output
    assert "champion" not in client.get_registered_model(name).aliases

    promoted = _gate(tracking_uri, "-m", name, "-v", good, "--policy", str(policy_file), "--alias", "champion", "--promote")
    assert promoted.exit_code == 0, promoted.output
    assert f"Promoted: alias 'champion' now points to version {good} of '{name}'" in promoted.output
    assert str(client.get_registered_model(name).aliases["champion"]) == good


def test_promote_to_a_stage(model, policy_file: Path, tracking_uri: str) -> None:
    client, name, good, wasteful = model
    assert _gate(tracking_uri, "-m", name, "-v", wasteful, "--policy", str(policy_file), "--stage", "production", "--promote").exit_code == 1
    assert client.get_model_version(name, wasteful).current_stage == "None"
    result = _gate(tracking_uri, "-m", name, "-v", good, "--policy", str(policy_file), "--stage", "production", "--promote")
    assert result.exit_code == 0, result.output
    assert client.get_model_version(name, good).current_stage == "Production"


def test_json_output(model, policy_file: Path, tracking_uri: str) -> None:
    _, name, _, wasteful = model
    result = _gate(tracking_uri, "-m", name, "-v", wasteful, "--policy", str(policy_file), "--alias", "staging", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] is True and report["alias"] == "staging" and report["promoted"] is None
    assert [r["rule"] for r in report["rules"]] == ["max_energy_kwh", "measured_only"]


def test_the_policy_comes_from_the_environment_too(model, policy_file: Path, tracking_uri: str) -> None:
    _, name, good, _ = model
    result = CliRunner().invoke(
        main,
        ["gate", "-m", name, "-v", good, "--alias", "champion"],
        env={"MLFLOW_GREEN_GATE_POLICY": str(policy_file), "MLFLOW_TRACKING_URI": tracking_uri},
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--alias", "canary"], "no rules for alias 'canary' (covered: champion, staging)"),
        (["--promote"], "--promote needs --alias or --stage"),
        (["--alias", "champion", "--stage", "Production"], "give --alias or --stage, not both"),
        (["-v", "99", "--alias", "champion"], "not found"),
        ([], "no [default] table"),
    ],
    ids=["uncovered-alias", "promote-without-target", "alias-and-stage", "unknown-version", "no-default"],
)
def test_usage_and_configuration_errors_exit_2(model, tracking_uri: str, tmp_path: Path, args: list[str], words: str) -> None:
    _, name, good, _ = model
    policy = tmp_path / "aliases-only.toml"
    policy.write_text("[aliases.champion]\nmax_energy_kwh = 1\n[aliases.staging]\nmax_energy_kwh = 5\n")
    result = _gate(tracking_uri, "-m", name, "-v", good, "--policy", str(policy), *args)
    assert result.exit_code == 2, result.output
    assert words in result.output


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty.toml: the policy has no rules, so it would pass every version"),
        ("[default]\n", "empty.toml: [default]: this section checks nothing, so it would pass every version"),
        ("[default]\nmax_energy_kwh = 1\n[aliases.staging]\nmeasured_only = false\n[stages.production]\n",
         None),
        ("[aliases.champion]\nmax_energy_kwh = 1\n[aliases.staging]\n",
         "empty.toml: [aliases.staging]: this section checks nothing (nor does [default])"),
    ],
    ids=["empty-file", "empty-default", "inherits-default", "empty-alias"],
)
def test_an_empty_policy_or_section_exits_2_naming_it(model, tracking_uri: str, tmp_path: Path, text: str,
                                                      words: str | None) -> None:
    _, name, good, _ = model
    policy = tmp_path / "empty.toml"
    policy.write_text(text)
    result = _gate(tracking_uri, "-m", name, "-v", good, "--policy", str(policy))
    if words is None:  # empty tables that inherit [default]'s rules are fine
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    assert words in result.output


def test_a_malformed_policy_exits_2_naming_the_key(model, tracking_uri: str, tmp_path: Path) -> None:
    _, name, good, _ = model
    policy = tmp_path / "bad.toml"
    policy.write_text("[aliases.champion]\nmax_energy_kwh = -1\n")
    result = _gate(tracking_uri, "-m", name, "-v", good, "--policy", str(policy), "--alias", "champion")
    assert result.exit_code == 2
    assert "bad.toml: [aliases.champion] max_energy_kwh: must be a finite number >= 0 (kWh), got -1" in result.output
    as_json = _gate(tracking_uri, "-m", name, "-v", good, "--policy", str(policy), "--format", "json")
    assert as_json.exit_code == 2 and json.loads(as_json.output)["type"] == "PolicyError"


def test_missing_required_options_exit_2(tracking_uri: str) -> None:
    assert _gate(tracking_uri, "-m", "x").exit_code == 2


def test_the_installed_console_script_exits_1_on_a_failure(model, policy_file: Path, tracking_uri: str) -> None:
    _, name, _, wasteful = model
    exe = Path(sys.executable).with_name("mlflow-green")
    out = subprocess.run(
        [str(exe), "gate", "-m", name, "-v", wasteful, "--policy", str(policy_file), "--alias", "champion", "--tracking-uri", tracking_uri],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1, out.stderr
    assert "Gate FAILED" in out.stdout


def test_promote_remembers_the_holder_for_the_next_comparison(mlflow_experiment: str, tracking_uri: str,
                                                              tmp_path: Path) -> None:
    """--promote records the alias's holder; after the alias is deleted, the next candidate must still beat it."""
    client = MlflowClient(tracking_uri)
    name = f"cli-holder-{uuid.uuid4().hex[:8]}"
    policy = tmp_path / "beat.toml"
    policy.write_text("[aliases.champion]\nbeat_current_by_percent = 5\n")
    first = _version(client, mlflow_experiment, name, GOOD, MEASURED)
    promoted = _gate(tracking_uri, "-m", name, "-v", first, "--policy", str(policy), "--alias", "champion", "--promote")
    assert promoted.exit_code == 0, promoted.output
    holder = json.loads(client.get_registered_model(name).tags[schema.gate_holder_tag("alias", "champion")])
    assert holder == {"version": first, "run_id": client.get_model_version(name, first).run_id, "accuracy_per_kwh": 4500.0}
    client.delete_registered_model_alias(name, "champion")
    barely = _version(client, mlflow_experiment, name, {**GOOD, schema.ACCURACY_PER_KWH: 4600.0}, MEASURED)
    result = _gate(tracking_uri, "-m", name, "-v", barely, "--policy", str(policy), "--alias", "champion", "--promote")
    assert result.exit_code == 1, result.output
    assert f"(version {first}, which held alias champion last (the alias was removed since): 4,500 per kWh, + 5 %)" in result.output


def test_control_and_bidi_characters_in_names_are_shown_escaped(mlflow_experiment: str, tracking_uri: str,
                                                                 policy_file: Path) -> None:
    client = MlflowClient(tracking_uri)
    name = f"digits\u202eLIAF-{uuid.uuid4().hex[:6]}"
    version = _version(client, mlflow_experiment, name, WASTEFUL, MEASURED)
    result = _gate(tracking_uri, "-m", name, "-v", version, "--policy", str(policy_file), "--alias", "champion")
    assert result.exit_code == 1
    assert "\u202e" not in result.output and "digits\\u202eLIAF" in result.output
