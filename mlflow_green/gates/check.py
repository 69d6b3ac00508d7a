"""Check a model version against a policy, and record the outcome as model-version tags.

Example::

    from mlflow_green.gates import check
    result = check("digits", 3, "green-policy.toml", alias="champion")
    if not result.passed:
        print(result.report())
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from mlflow_green.errors import ArgumentTypeError, SignatureError
from mlflow_green.gates.inference_rules import INFERENCE_RULES
from mlflow_green.gates.policy import Policy, canonical_stage, load_policy
from mlflow_green.gates.registry import ClientRegistry, Registry, gather_evidence
from mlflow_green.gates.result import GateResult
from mlflow_green.gates.rules import evaluate
from mlflow_green.record import schema
from mlflow_green.record.signing import ENV_TRUSTED_KEYS, TrustedKeys

if TYPE_CHECKING:
    from mlflow import MlflowClient


def check(
    model: str,
    version: str | int,
    policy: Policy | str | os.PathLike[str],
    *,
    alias: str | None = None,
    stage: str | None = None,
    client: MlflowClient | None = None,
    write_tags: bool = True,
    trusted_keys: TrustedKeys | None = None,
) -> GateResult:
    """Check one model version's source run against a policy.

    The rules are the policy's ``[aliases.<alias>]`` (or ``[stages.<stage>]``) table merged over
    ``[default]``; with neither ``alias`` nor ``stage``, the ``[default]`` table alone. The outcome
    is written to the version's tags ``green.gate`` (``passed``/``failed``), ``green.gate.reasons``
    and ``green.gate.policy``.

    Args:
        model: Registered model name.
        version: Model version.
        policy: A :class:`Policy`, or the path of a policy TOML file.
        alias: The alias the version is to get (selects the alias's rules; the current holder
            is what ``beat_current_by_percent`` compares with).
        stage: The stage the version is to move to, instead of an alias.
        client: The MLflow client (default: ``MlflowClient()``, the current tracking URI).
        write_tags: Write the ``green.gate*`` tags (default True).
        trusted_keys: Public keys for ``require_signed`` (default: ``MLFLOW_GREEN_TRUSTED_KEYS``).

    Returns:
        The :class:`GateResult`; a failed check does not raise.

    Raises:
        PolicyError: Malformed policy, or no rules for this alias / stage.
        SignatureError: The rules require signed runs and no trusted key is configured (or one
            cannot be read).
        ArgumentTypeError: An argument of the wrong type.
        mlflow.exceptions.MlflowException: The model or version does not exist.
    """
    _check_arguments(model, version, alias, stage, write_tags)
    if not isinstance(policy, Policy):
        if not isinstance(policy, (str, os.PathLike)):
            raise ArgumentTypeError("policy", "a Policy or the path of a policy TOML file", policy)
        policy = load_policy(policy)
    if client is None:
        from mlflow import MlflowClient

        client = MlflowClient()
    elif not all(hasattr(client, name) for name in ("get_model_version", "get_run", "set_model_version_tag")):
        raise ArgumentTypeError("client", "an mlflow.MlflowClient or None", client)
    return check_version(ClientRegistry(client), model, version, policy, alias=alias, stage=stage,
                         write_tags=write_tags, trusted_keys=trusted_keys)


def check_version(
    registry: Registry,
    model: str,
    version: str | int,
    policy: Policy,
    *,
    alias: str | None = None,
    stage: str | None = None,
    write_tags: bool = True,
    trusted_keys: TrustedKeys | None = None,
) -> GateResult:
    """:func:`check` against any :class:`~mlflow_green.gates.registry.Registry` (the server uses its stores)."""
    if not all(hasattr(registry, name) for name in ("model_version", "run", "set_version_tags")):
        raise ArgumentTypeError("registry", "a Registry (ClientRegistry(MlflowClient()) or StoreRegistry)", registry)
    if not isinstance(policy, Policy):
        raise ArgumentTypeError("policy", "a Policy (load_policy(path))", policy)
    _check_arguments(model, version, alias, stage, write_tags)
    rules = policy.rules(alias=alias, stage=stage)
    stage_name = canonical_stage(stage) if stage is not None else None
    version = str(version)
    if rules.require_signed:
        trusted_keys = require_trusted_keys(trusted_keys, rules.section)
    evidence = gather_evidence(
        registry,
        model,
        version,
        target_alias=alias,
        target_stage=stage_name,
        with_incumbent=rules.beat_current_by_percent is not None,
        trusted_keys=trusted_keys if rules.require_signed else None,
        with_inference=any(key in INFERENCE_RULES for key in rules.checks()),
    )
    results = () if evidence.prompt else evaluate(rules, evidence)
    result = GateResult(
        model=model,
        version=version,
        passed=all(r.passed for r in results),
        rules=results,
        policy=policy.label(rules),
        run_id=evidence.run_id,
        alias=alias,
        stage=stage_name,
        prompt=evidence.prompt,
        accuracy_per_kwh=evidence.metrics.get(schema.ACCURACY_PER_KWH),
    )
    if write_tags and not result.prompt:
        changed = {key: value for key, value in result.tags().items() if evidence.version_tags.get(key) != value}
        if changed:  # a repeated check of an unchanged version writes nothing
            registry.set_version_tags(model, version, changed)
    return result


def remember_holder(registry: Registry, result: GateResult) -> None:
    """Record that ``result``'s version now holds its alias or stage (after the promotion succeeded)."""
    tag = result.holder_tag()
    if tag:
        registry.set_model_tags(result.model, tag)


def require_trusted_keys(trusted_keys: TrustedKeys | None, section: str) -> TrustedKeys:
    """The keys to verify signatures with (default: ``MLFLOW_GREEN_TRUSTED_KEYS``); at least one.

    Raises:
        SignatureError: None configured, or a listed key cannot be read.
    """
    if trusted_keys is None:
        trusted_keys = TrustedKeys.from_env()
    elif not isinstance(trusted_keys, TrustedKeys):
        raise ArgumentTypeError("trusted_keys", "a TrustedKeys (TrustedKeys.from_paths([...])) or None", trusted_keys)
    if not len(trusted_keys):
        raise SignatureError(
            f"[{section}] sets require_signed = true, but no public key is trusted: set {ENV_TRUSTED_KEYS} to the "
            f"paths of the public keys that sign your runs, separated by {os.pathsep!r} (mlflow-green keys generate "
            "DIR writes a pair)"
        )
    return trusted_keys


def _check_arguments(model: Any, version: Any, alias: Any, stage: Any, write_tags: Any) -> None:
    if not isinstance(model, str) or not model.strip():
        raise ArgumentTypeError("model", "a registered model name (non-empty str)", model)
    if isinstance(version, bool) or not isinstance(version, (str, int)) or not str(version).strip().isdigit():
        raise ArgumentTypeError("version", "a model version number (int, or str of digits)", version)
    for name, value in (("alias", alias), ("stage", stage)):
        if value is not None and not isinstance(value, str):
            raise ArgumentTypeError(name, f"an {name} name (str) or None" if name == "alias" else "a stage name (str) or None", value)
    if not isinstance(write_tags, bool):
        raise ArgumentTypeError("write_tags", "True or False", write_tags)
