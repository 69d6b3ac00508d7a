"""Wrong argument types to the public API (gates, policies, ranking) raise our documented errors, never a bare
TypeError/AttributeError."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from mlflow_green.errors import ArgumentTypeError, ConfigError, GreenError, PolicyError
from mlflow_green.gates import (
    Evidence,
    Rules,
    StoreRegistry,
    check,
    check_version,
    evaluate,
    load_policy,
    loads_policy,
    parse_policy,
)
from mlflow_green.ranking import rank, rank_client
from mlflow_green.record.run_signature import sign_run, verify_run
from mlflow_green.record.signing import SigningKey, TrustedKeys, generate_key_pair

POLICY = loads_policy("[default]\nmax_energy_kwh = 1\n[aliases.champion]\nmax_energy_kwh = 0.5")

CALLS: list[tuple[str, Callable[[], Any], str]] = [
    ("load_policy(None)", lambda: load_policy(None), "path must be the path of a policy TOML file"),
    ("load_policy(5)", lambda: load_policy(5), "got 5 (int)"),
    ("load_policy(b'p.toml')", lambda: load_policy(b"p.toml"), "got b'p.toml' (bytes)"),
    ("loads_policy(None)", lambda: loads_policy(None), "text must be the policy's TOML text"),
    ("loads_policy(bytes)", lambda: loads_policy(b"[default]"), "decode bytes first"),
    ("loads_policy(source=5)", lambda: loads_policy("[default]\nmax_energy_kwh = 1", source=5), "source must be"),
    ("parse_policy(digest=5)", lambda: parse_policy({"default": {"max_energy_kwh": 1}}, digest=5), "digest must be"),
    ("check(model=5)", lambda: check(5, 1, POLICY), "model must be a registered model name"),
    ("check(model='')", lambda: check("", 1, POLICY), "model must be a registered model name"),
    ("check(version=None)", lambda: check("m", None, POLICY), "version must be a model version number"),
    ("check(version=True)", lambda: check("m", True, POLICY), "got True (bool)"),
    ("check(version=1.5)", lambda: check("m", 1.5, POLICY), "got 1.5 (float)"),
    ("check(version='latest')", lambda: check("m", "latest", POLICY), "got 'latest' (str)"),
    ("check(policy=5)", lambda: check("m", 1, 5), "policy must be a Policy or the path"),
    ("check(policy=dict)", lambda: check("m", 1, {"default": {}}), "policy must be a Policy"),
    ("check(alias=5)", lambda: check("m", 1, POLICY, alias=5), "alias must be an alias name"),
    ("check(stage=['Production'])", lambda: check("m", 1, POLICY, stage=["Production"]), "stage must be a stage name"),
    ("check(client=5)", lambda: check("m", 1, POLICY, client=5), "client must be an mlflow.MlflowClient"),
    ("check(write_tags='no')", lambda: check("m", 1, POLICY, write_tags="no"), "write_tags must be True or False"),
    ("policy.rules(alias=5)", lambda: POLICY.rules(alias=5), "alias must be an alias name"),
    ("policy.for_alias(None)", lambda: POLICY.for_alias(None), "alias must be an alias name"),
    ("policy.covers(stage=3)", lambda: POLICY.covers(stage=3), "stage must be a stage name"),
    ("rank(5.5)", lambda: rank(5.5), "experiments must be an experiment name or id"),
    ("rank([None])", lambda: rank([None]), "got [None] (list)"),
    ("rank(model=5)", lambda: rank(model=5), "model must be a string or None"),
    ("rank(metric=5)", lambda: rank("e", metric=5), "metric must be a string or None"),
    ("rank(filter_string=5)", lambda: rank("e", filter_string=5), "filter_string must be a string or None"),
    ("rank(measured_only='x')", lambda: rank("e", measured_only="x"), "measured_only must be True or False"),
    ("rank(tracking_uri=5)", lambda: rank("e", tracking_uri=5), "tracking_uri must be a string or None"),
    ("rank_client(None, ...)", lambda: rank_client(None, "e"), "client must be an mlflow.MlflowClient"),
    ("check_version(None, ...)", lambda: check_version(None, "m", "1", POLICY), "registry must be a Registry"),
    ("check_version(policy=5)", lambda: check_version(StoreRegistry(None, None), "m", "1", 5),
     "policy must be a Policy"),
    ("SigningKey.from_file(None)", lambda: SigningKey.from_file(None), "path must be a file or folder path"),
    ("TrustedKeys.from_paths(5)", lambda: TrustedKeys.from_paths(5), "paths must be a list of public key paths"),
    ("TrustedKeys.from_paths([5])", lambda: TrustedKeys.from_paths([5]), "paths[...] must be a file or folder path"),
    ("generate_key_pair(None)", lambda: generate_key_pair(None), "directory must be a file or folder path"),
    ("verify_run(None, ...)", lambda: verify_run(None, "r", TrustedKeys({})), "client must be an mlflow.MlflowClient"),
    ("sign_run(None, ...)", lambda: sign_run(None, "r", None), "client must be an mlflow.MlflowClient"),
    ("evaluate(None, ...)", lambda: evaluate(None, Evidence(run_id="r")), "rules must be a Rules"),
    ("evaluate(..., {})", lambda: evaluate(Rules(max_energy_kwh=1.0), {}), "evidence must be an Evidence"),
]


@pytest.mark.parametrize(("call", "words"), [(c[1], c[2]) for c in CALLS], ids=[c[0] for c in CALLS])
def test_wrong_argument_types_raise_argument_type_error(call: Callable[[], Any], words: str) -> None:
    with pytest.raises(ArgumentTypeError) as caught:
        call()
    assert words in str(caught.value)
    assert isinstance(caught.value, (GreenError, ConfigError, TypeError))


def test_a_missing_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(tmp_path / "nope.toml")


def test_trusted_keys_must_be_trusted_keys(client: MlflowClient, model_name: str, make_version) -> None:
    version = make_version({"green/energy_kwh": 0.1})
    with pytest.raises(ArgumentTypeError, match="trusted_keys must be a TrustedKeys"):
        check(model_name, version, loads_policy("[default]\nrequire_signed = true"), client=client, trusted_keys=["k.pub"])
