"""Model-registry energy gates: a wasteful or unmeasured model cannot be promoted.

A policy (TOML) sets rules on a model version's source run — training energy, emissions,
accuracy per kWh, inference energy per sample, model size, sparsity, measured (not estimated)
energy, signed measurements, and beating the version that holds the alias now (or held it
last) — per alias and per stage. Impossible values (negative, zero where work was done, NaN,
infinite) fail every rule that reads them. :func:`check` evaluates one version and writes the
``green.gate``, ``green.gate.reasons`` and ``green.gate.policy`` tags; ``mlflow-green gate`` does
the same from CI, and ``mlflow server --app-name green`` refuses alias and stage requests that
fail the policy in ``MLFLOW_GREEN_GATE_POLICY`` — and client writes of the tags the gate relies on.

Example::

    from mlflow_green.gates import check, load_policy

    policy = load_policy("green-policy.toml")
    result = check("digits", 3, policy, alias="champion")
    print(result.passed, [r.rule for r in result.failed])
"""

from __future__ import annotations

from mlflow_green.errors import ArgumentTypeError, PolicyError
from mlflow_green.gates.check import check, check_version, remember_holder
from mlflow_green.gates.policy import ENV_GATE_POLICY, Policy, canonical_stage, load_policy, loads_policy, parse_policy
from mlflow_green.gates.registry import ClientRegistry, StoreRegistry
from mlflow_green.gates.result import GateResult
from mlflow_green.gates.rules import RULE_SPECS, Evidence, Incumbent, RuleResult, Rules, evaluate

__all__ = [
    "ArgumentTypeError",
    "ENV_GATE_POLICY",
    "RULE_SPECS",
    "ClientRegistry",
    "Evidence",
    "GateResult",
    "Incumbent",
    "Policy",
    "PolicyError",
    "RuleResult",
    "Rules",
    "StoreRegistry",
    "canonical_stage",
    "check",
    "check_version",
    "evaluate",
    "load_policy",
    "loads_policy",
    "parse_policy",
    "remember_holder",
]
