"""Check a model version against a policy, and record the outcome as model-version tags.

Example::

    from mlflow_green.gates import check
    result = check("digits", 3, "green-policy.toml", alias="champion")
    if not result.passed:
        print(result.report())
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mlflow_green.gates.policy import Policy, canonical_stage, load_policy
from mlflow_green.gates.registry import ClientRegistry, Registry, gather_evidence
from mlflow_green.gates.result import PROMPT_TAG, GateResult
from mlflow_green.gates.rules import evaluate

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

    Returns:
        The :class:`GateResult`; a failed check does not raise.

    Raises:
        PolicyError: Malformed policy, or no rules for this alias / stage.
        mlflow.exceptions.MlflowException: The model or version does not exist.
    """
    if not isinstance(policy, Policy):
        policy = load_policy(policy)
    if client is None:
        from mlflow import MlflowClient

        client = MlflowClient()
    return check_version(ClientRegistry(client), model, version, policy, alias=alias, stage=stage, write_tags=write_tags)


def check_version(
    registry: Registry,
    model: str,
    version: str | int,
    policy: Policy,
    *,
    alias: str | None = None,
    stage: str | None = None,
    write_tags: bool = True,
) -> GateResult:
    """:func:`check` against any :class:`~mlflow_green.gates.registry.Registry` (the server uses its stores)."""
    rules = policy.rules(alias=alias, stage=stage)
    stage_name = canonical_stage(stage) if stage is not None else None
    version = str(version)
    evidence = gather_evidence(
        registry,
        model,
        version,
        target_alias=alias,
        target_stage=stage_name,
        with_incumbent=rules.beat_current_by_percent is not None,
    )
    results = evaluate(rules, evidence)
    result = GateResult(
        model=model,
        version=version,
        passed=all(r.passed for r in results),
        rules=results,
        policy=policy.label(rules),
        run_id=evidence.run_id,
        alias=alias,
        stage=stage_name,
        prompt=evidence.version_tags.get(PROMPT_TAG, "false").lower() == "true",
    )
    if write_tags and not result.prompt:
        changed = {key: value for key, value in result.tags().items() if evidence.version_tags.get(key) != value}
        if changed:  # a repeated check of an unchanged version writes nothing
            registry.set_version_tags(model, version, changed)
    return result
