"""Policy parsing: the format, the merge of [default] into aliases and stages, and clear errors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_green.errors import ConfigError, PolicyError
from mlflow_green.gates import RULE_SPECS, Policy, Rules, load_policy, loads_policy, parse_policy
from mlflow_green.gates.policy import RULE_KEYS

FULL = """
[default]
measured_only = true
max_energy_kwh = 2.0
max_emissions_kg = 1
max_energy_per_sample_predict_j = 0.5

[aliases.champion]
max_energy_kwh = 0.5
min_accuracy_per_kwh = 1500
beat_current_by_percent = 5
max_model_size_bytes = 20_000_000
min_sparsity = 0.3
require_inference_energy = true

[aliases.staging]
measured_only = false

[stages.production]
max_energy_kwh = 0.7
"""


def test_a_full_policy_merges_default_into_each_alias_and_stage() -> None:
    policy = loads_policy(FULL, source="/ci/green-policy.toml")
    assert policy.name == "green-policy.toml"
    assert policy.default == Rules(
        section="default", measured_only=True, max_energy_kwh=2.0, max_emissions_kg=1.0, max_energy_per_sample_predict_j=0.5
    )
    champion = policy.for_alias("champion")
    assert champion is not None
    assert champion.to_dict() == {
        "max_energy_kwh": 0.5,
        "max_emissions_kg": 1.0,
        "min_accuracy_per_kwh": 1500.0,
        "max_energy_per_sample_predict_j": 0.5,
        "require_inference_energy": True,
        "max_model_size_bytes": 20_000_000.0,
        "min_sparsity": 0.3,
        "measured_only": True,
        "beat_current_by_percent": 5.0,
    }
    assert champion.section == "aliases.champion"
    staging = policy.rules(alias="staging")
    assert staging.measured_only is False and staging.max_energy_kwh == 2.0
    production = policy.for_stage("PRODUCTION")
    assert production is not None and production.section == "stages.Production" and production.max_energy_kwh == 0.7
    assert policy.label(production).startswith("green-policy.toml [stages.Production] sha256:")
    assert len(policy.digest) == 64


def test_what_the_policy_covers() -> None:
    policy = loads_policy(FULL)
    assert policy.covers(alias="champion") and policy.covers(alias="staging") and not policy.covers(alias="canary")
    assert policy.covers(stage="Production") and not policy.covers(stage="Staging") and not policy.covers(stage="bogus")
    assert policy.covers()  # [default] exists
    assert policy.rules() == policy.default
    with pytest.raises(PolicyError, match="no rules for stage 'Staging'"):
        policy.rules(stage="Staging")
    with pytest.raises(PolicyError, match="not both"):
        policy.rules(alias="champion", stage="Production")


def test_wildcards_cover_what_is_not_listed() -> None:
    policy = loads_policy('[aliases."*"]\nmax_energy_kwh = 1\n[aliases.dev]\nmeasured_only = true\n[stages."*"]\nmeasured_only = true')
    assert policy.rules(alias="anything").max_energy_kwh == 1.0
    assert policy.rules(alias="dev").max_energy_kwh is None  # listed by name: its own table
    assert policy.rules(stage="archived").section == "stages.*"


def test_no_default_means_no_rules_without_an_alias() -> None:
    policy = loads_policy("[aliases.champion]\nmax_energy_kwh = 1")
    assert policy.default is None and not policy.covers()
    with pytest.raises(PolicyError, match=r"no \[default\] table"):
        policy.rules()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "the policy has no rules, so it would pass every version"),
        ("# nothing but a comment\n", "the policy has no rules"),
        ("[aliases]\n[stages]\n", "the policy has no rules"),
        ("[default]\n", "[default]: this section checks nothing, so it would pass every version"),
        ("[default]\n[aliases.champion]\nmax_energy_kwh = 1\n", "[default]: this section checks nothing"),
        ("[aliases.champion]\n", "[aliases.champion]: this section checks nothing (nor does [default])"),
        ("[aliases.staging]\nmeasured_only = false\n", "[aliases.staging]: this section checks nothing"),
        ("[default]\nmeasured_only = false\n", "[default]: this section checks nothing"),
        ("[stages.production]\nrequire_signed = false\n", "[stages.Production]: this section checks nothing"),
        ('[aliases."*"]\n', "[aliases.*]: this section checks nothing"),
    ],
    ids=["empty", "comment", "empty-parents", "empty-default", "empty-default-with-alias", "empty-alias",
         "only-off-switch", "default-off", "stage-off", "wildcard"],
)
def test_a_policy_or_section_that_checks_nothing_is_an_error_naming_it(text: str, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        loads_policy(text, source="green-policy.toml")
    assert str(caught.value).startswith("green-policy.toml: ")
    assert words in str(caught.value)


def test_an_empty_alias_table_inherits_the_default_rules() -> None:
    policy = loads_policy("[default]\nmax_energy_kwh = 1\n[aliases.staging]\n")
    assert policy.rules(alias="staging").checks() == ("max_energy_kwh",)


@pytest.mark.parametrize(
    ("text", "table", "key", "words"),
    [
        ("[default]\nmax_energy = 1", "default", "max_energy", "unknown key"),
        ("[aliases.champion]\nmax_energy_kwh = 'half'", "aliases.champion", "max_energy_kwh", "must be a finite number >= 0 (kWh), got 'half' (str)"),
        ("[aliases.champion]\nmax_energy_kwh = true", "aliases.champion", "max_energy_kwh", "got True (bool)"),
        ("[default]\nmax_emissions_kg = -0.5", "default", "max_emissions_kg", "must be a finite number >= 0 (kg), got -0.5"),
        ("[default]\nmin_accuracy_per_kwh = nan", "default", "min_accuracy_per_kwh", "got nan"),
        ("[default]\nmax_energy_kwh = inf", "default", "max_energy_kwh", "got inf"),
        ("[default]\nmin_sparsity = 1.5", "default", "min_sparsity", "must be a number from 0 to 1, got 1.5"),
        ("[default]\nmeasured_only = 'yes'", "default", "measured_only", "must be true or false, got 'yes' (str)"),
        ("[default]\nmeasured_only = 1", "default", "measured_only", "must be true or false, got 1 (int)"),
        ("[default]\nbeat_current_by_percent = -5", "default", "beat_current_by_percent", "must be a finite number >= 0 (%)"),
        ("[default]\nmax_model_size_bytes = [1]", "default", "max_model_size_bytes", "got [1] (list)"),
        ("[stages.prod]\nmax_energy_kwh = 1", "stages", "prod", "unknown stage; stages are None, Staging, Production, Archived"),
        ("[stages.production]\n[stages.Production]", "stages", "Production", "listed twice"),
        ("aliases = 3", "aliases", None, "must be a table of tables ([aliases.NAME]), got 3 (int)"),
        ("[aliases]\nchampion = 0.5", "aliases", "champion", "must be a table ([aliases.champion]) of rules, got 0.5"),
        ("default = 'strict'", "default", None, "must be a table of rules"),
        (
            "[aliases.champion]\nrequire_inference_energy = true",
            "aliases.champion",
            "require_inference_energy",
            "needs max_energy_per_sample_predict_j",
        ),
    ],
)
def test_a_malformed_policy_names_the_table_the_key_and_the_problem(
    text: str, table: str, key: str | None, words: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        loads_policy(text, source="green-policy.toml")
    err = caught.value
    message = str(err)
    assert message.startswith(f"green-policy.toml: [{table}]")
    assert words in message
    assert (err.table, err.key) == (table, key)
    if key in RULE_KEYS or words == "unknown key":
        assert err.valid_keys == RULE_KEYS
        assert message.endswith(f"Valid keys in [{table}]: " + ", ".join(RULE_KEYS))


def test_an_unknown_table_lists_the_valid_ones() -> None:
    with pytest.raises(PolicyError) as caught:
        loads_policy("[defaults]\nmax_energy_kwh = 1", source="p.toml")
    assert str(caught.value) == "p.toml: defaults: unknown table. Valid keys at the top level: default, aliases, stages"


def test_files_missing_unreadable_or_not_toml(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy file not found: .*nope.toml"):
        load_policy(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[default\nmax_energy_kwh = 1\n")
    with pytest.raises(PolicyError, match=r"bad.toml: not valid TOML: .*line 1"):
        load_policy(bad)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(binary)
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path)


def test_policy_error_is_a_config_error_and_a_value_error() -> None:
    assert issubclass(PolicyError, ConfigError) and issubclass(PolicyError, ValueError)


def test_every_key_is_documented(pytestconfig: pytest.Config) -> None:
    docs = (Path(str(pytestconfig.rootpath)) / "docs" / "gates.md").read_text()
    for key in RULE_SPECS:
        assert f"`{key}`" in docs, key


# --- properties -------------------------------------------------------------------------------

_KEYS = st.sampled_from([*RULE_KEYS, "default", "aliases", "stages", "champion", "production", "*", "", "max_energy"])
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.datetimes(),
    st.binary(max_size=4),
)
_KEYLIKE = st.one_of(_KEYS, st.text(max_size=6), st.integers(-3, 3))
_TOMLISH = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(_KEYLIKE, children, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_TOMLISH, st.dictionaries(_KEYLIKE, _TOMLISH, max_size=4)))
def test_parsing_arbitrary_data_raises_nothing_but_policy_error(data: Any) -> None:
    try:
        policy = parse_policy(data)
    except PolicyError as err:
        assert str(err)
    else:
        assert isinstance(policy, Policy)


_VALUES = {
    "number": st.one_of(st.integers(0, 10**9), st.floats(0, 1e9, allow_nan=False)),
    "fraction": st.floats(0, 1),
    "bool": st.booleans(),
}
_RULE_TABLE = st.fixed_dictionaries(
    {}, optional={key: _VALUES[spec.kind] for key, spec in RULE_SPECS.items() if key != "require_inference_energy"}
)


@settings(max_examples=200, deadline=None)
@given(default=_RULE_TABLE, champion=_RULE_TABLE)
def test_valid_rules_round_trip_and_aliases_override_the_default(default: dict, champion: dict) -> None:
    def checks(table: dict) -> bool:
        return any(value is not False for value in table.values())

    if not checks(default) or not checks({**default, **champion}):
        section = "default" if not checks(default) else "aliases.champion"
        with pytest.raises(PolicyError, match=rf"\[{section}\]: this section checks nothing"):
            parse_policy({"default": default, "aliases": {"champion": champion}})
        return
    policy = parse_policy({"default": default, "aliases": {"champion": champion}})
    assert policy.default is not None
    assert policy.default.to_dict() == {k: (v if isinstance(v, bool) else float(v)) for k, v in default.items()}
    merged = policy.rules(alias="champion")
    for key in RULE_KEYS:
        expected = champion.get(key, default.get(key))
        got = merged.value(key)
        if expected is None:
            assert got is None
        elif isinstance(expected, bool):
            assert got is expected
        else:
            assert math.isclose(got, float(expected))
