"""The inference gate rules: joules per prediction, latency, and an inference measurement at all.

They read the version's inference evidence (:mod:`mlflow_green.gates.inference_evidence`: the
evaluation named by ``green.inference_run``, else the source run when it was evaluated in-run).
Like every rule, a missing or impossible figure never passes.

- ``max_inference_energy_per_prediction_j``: ``green/inference_energy_per_prediction_j`` (the
  headline batch size) at most the limit, in joules;
- ``max_inference_latency_ms``: ``green/inference_latency_ms`` (median time of one call at the
  headline batch size) at most the limit, in milliseconds;
- ``require_inference_measurement = true``: the version has an inference measurement; with
  ``measured_only = true`` in the same section, its energy must be measured, not estimated
  (``green.inference_estimated=false``).

Example:
    >>> from mlflow_green.gates.evidence import Evidence
    >>> from mlflow_green.gates.inference_evidence import InferenceEvidence
    >>> from mlflow_green.gates.rules import Rules
    >>> found = InferenceEvidence("e1", {"green/inference_energy_per_prediction_j": 0.003},
    ...                           {"green.inference_batch_size": "32"}, "green.inference_run")
    >>> evidence = Evidence(run_id="r1", inference=found)
    >>> max_inference_energy_per_prediction_j(Rules(max_inference_energy_per_prediction_j=0.002), evidence).detail
    '3 mJ > limit 2 mJ (batch size 32, run e1)'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_green.gates.evidence import Evidence
from mlflow_green.gates.inference_evidence import InferenceEvidence
from mlflow_green.gates.outcome import RuleResult
from mlflow_green.gates.plausibility import fmt, impossible_value, shown_value
from mlflow_green.record import schema

if TYPE_CHECKING:
    from mlflow_green.gates.rules import Rules

INFERENCE_RULES = ("max_inference_energy_per_prediction_j", "max_inference_latency_ms", "require_inference_measurement")
"""The rules that need the inference evidence read."""


def _found(rule: str, limit: float | bool, unit: str, evidence: Evidence) -> InferenceEvidence | RuleResult:
    found = evidence.inference
    if found is None:
        return RuleResult(rule, False, None, limit, unit, "the inference measurement was not read")
    if found.missing is not None:
        return RuleResult(rule, False, None, limit, unit, found.missing)
    return found


def _value(rule: str, key: str, limit: float | bool, unit: str, evidence: Evidence) -> tuple[InferenceEvidence, float] | RuleResult:
    found = _found(rule, limit, unit, evidence)
    if isinstance(found, RuleResult):
        return found
    if key not in found.metrics:
        return RuleResult(rule, False, None, limit, unit, f"not logged ({key}) in run {found.run_id}")
    value = float(found.metrics[key])
    problem = impossible_value(key, value, {})
    if problem is None and value < 0:
        problem = f"{key} = {fmt(value, unit)} is impossible (negative)"
    elif problem is None and value == 0:
        problem = f"{key} = {fmt(value, unit)} is impossible (a prediction always costs time and energy)"
    if problem is not None:
        return RuleResult(rule, False, shown_value(value), limit, unit, problem)
    return found, value


def _at_most(rule: str, key: str, limit: float, unit: str, evidence: Evidence) -> RuleResult:
    read = _value(rule, key, limit, unit, evidence)
    if isinstance(read, RuleResult):
        return read
    found, actual = read
    passed = actual <= limit
    sign = "<=" if passed else ">"
    return RuleResult(rule, passed, actual, limit, unit, f"{fmt(actual, unit)} {sign} limit {fmt(limit, unit)} ({found.where})")


def max_inference_energy_per_prediction_j(rules: Rules, evidence: Evidence) -> RuleResult:
    """Inference energy per prediction (headline batch size) at most the limit."""
    limit = float(rules.max_inference_energy_per_prediction_j or 0.0)
    return _at_most("max_inference_energy_per_prediction_j", schema.INFERENCE_ENERGY_PER_PREDICTION_J, limit, "J",
                    evidence)


def max_inference_latency_ms(rules: Rules, evidence: Evidence) -> RuleResult:
    """Median latency of one call (headline batch size) at most the limit."""
    limit = float(rules.max_inference_latency_ms or 0.0)
    return _at_most("max_inference_latency_ms", schema.INFERENCE_LATENCY_MS, limit, "ms", evidence)


def require_inference_measurement(rules: Rules, evidence: Evidence) -> RuleResult:
    """An inference measurement exists (measured, not estimated, when ``measured_only`` is set too)."""
    rule = "require_inference_measurement"
    if not rules.require_inference_measurement:
        return RuleResult(rule, True, None, False, "", "no inference measurement required", skipped=True)
    read = _value(rule, schema.INFERENCE_ENERGY_PER_PREDICTION_J, True, "J", evidence)
    if isinstance(read, RuleResult):
        return read
    found, _ = read
    estimated = (found.tags.get(schema.TAG_INFERENCE_ESTIMATED) or "").strip().lower()
    meters = found.tags.get(schema.TAG_INFERENCE_METERS)
    how = f", {schema.TAG_INFERENCE_METERS}={meters}" if meters else ""
    if rules.measured_only and estimated != "false":
        what = "estimated" if estimated == "true" else f"of unknown provenance ({schema.TAG_INFERENCE_ESTIMATED} missing)"
        return RuleResult(rule, False, "estimated", True, "",
                          f"inference energy is {what} ({schema.TAG_INFERENCE_ESTIMATED}={estimated or '?'}{how}; "
                          f"{found.where}); measured_only requires measured energy")
    kind = "estimated" if estimated == "true" else "measured"
    return RuleResult(rule, True, kind, True, "", f"{kind} by {found.via} ({found.where}{how})")
