"""One small pure function per gate rule: ``(rules, evidence) -> RuleResult``.

A measurement that is missing never passes (``not logged``), nor does an impossible one
(:mod:`mlflow_green.gates.plausibility`: NaN, infinite, negative, zero where work was done) —
except the inference-energy rule, which is skipped with a note when inference energy was not
logged, unless the policy sets ``require_inference_energy = true``.

Example:
    >>> from mlflow_green.gates.rules import Rules
    >>> from mlflow_green.gates.evidence import Evidence
    >>> max_energy_kwh(Rules(max_energy_kwh=0.5), Evidence(run_id="r1", metrics={"green/energy_kwh": 0.8})).detail
    '800 Wh > limit 500 Wh'
    >>> max_energy_kwh(Rules(max_energy_kwh=0.5), Evidence(run_id="r1", metrics={"green/energy_kwh": -5.0})).detail
    'green/energy_kwh = -5 kWh is impossible (negative energy)'
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mlflow_green.gates.evidence import Evidence
from mlflow_green.gates.outcome import RuleResult
from mlflow_green.gates.plausibility import PREDICT_J, fmt, impossible_input, impossible_value, shown_value
from mlflow_green.record import schema

if TYPE_CHECKING:
    from mlflow_green.gates.rules import Rules


def _not_logged(rule: str, key: str, limit: float | bool, unit: str, evidence: Evidence) -> RuleResult:
    why = evidence.missing_run or f"not logged ({key})"
    return RuleResult(rule, False, None, limit, unit, why)


def _read(rule: str, key: str, limit: float, unit: str, evidence: Evidence) -> float | RuleResult:
    """The value the rule compares, or the failed result when it is missing or impossible."""
    if evidence.missing_run is not None or key not in evidence.metrics:
        return _not_logged(rule, key, limit, unit, evidence)
    actual = float(evidence.metrics[key])
    problem = impossible_input(rule, evidence)
    if problem is not None:
        return RuleResult(rule, False, shown_value(actual), limit, unit, problem)
    return actual


def _at_most(rule: str, key: str, limit: float, unit: str, evidence: Evidence) -> RuleResult:
    actual = _read(rule, key, limit, unit, evidence)
    if isinstance(actual, RuleResult):
        return actual
    passed = actual <= limit
    sign = "<=" if passed else ">"
    return RuleResult(rule, passed, actual, limit, unit, f"{fmt(actual, unit)} {sign} limit {fmt(limit, unit)}")


def _at_least(rule: str, key: str, limit: float, unit: str, evidence: Evidence) -> RuleResult:
    actual = _read(rule, key, limit, unit, evidence)
    if isinstance(actual, RuleResult):
        return actual
    passed = actual >= limit
    sign = ">=" if passed else "<"
    return RuleResult(rule, passed, actual, limit, unit, f"{fmt(actual, unit)} {sign} minimum {fmt(limit, unit)}")


def max_energy_kwh(rules: Rules, evidence: Evidence) -> RuleResult:
    """Training energy (``green/energy_kwh``, all devices) at most the limit."""
    return _at_most("max_energy_kwh", schema.ENERGY_KWH, float(rules.max_energy_kwh or 0.0), "kWh", evidence)


def max_emissions_kg(rules: Rules, evidence: Evidence) -> RuleResult:
    """Emissions (``green/emissions_kg``) at most the limit."""
    return _at_most("max_emissions_kg", schema.EMISSIONS_KG, float(rules.max_emissions_kg or 0.0), "kg", evidence)


def min_accuracy_per_kwh(rules: Rules, evidence: Evidence) -> RuleResult:
    """Quality per kWh (``green/accuracy_per_kwh``) at least the minimum."""
    limit = float(rules.min_accuracy_per_kwh or 0.0)
    return _at_least("min_accuracy_per_kwh", schema.ACCURACY_PER_KWH, limit, "1/kWh", evidence)


def max_energy_per_sample_predict_j(rules: Rules, evidence: Evidence) -> RuleResult:
    """Inference energy per sample at most the limit; skipped when not logged, unless required."""
    limit = float(rules.max_energy_per_sample_predict_j or 0.0)
    rule = "max_energy_per_sample_predict_j"
    if PREDICT_J not in evidence.metrics and not rules.require_inference_energy and evidence.missing_run is None:
        note = f"not logged ({PREDICT_J}); skipped — set require_inference_energy = true to require it"
        return RuleResult(rule, True, None, limit, "J", note, skipped=True)
    return _at_most(rule, PREDICT_J, limit, "J", evidence)


def max_model_size_bytes(rules: Rules, evidence: Evidence) -> RuleResult:
    """Model size (``green/model_size_bytes``) at most the limit."""
    limit = float(rules.max_model_size_bytes or 0.0)
    return _at_most("max_model_size_bytes", schema.MODEL_SIZE_BYTES, limit, "bytes", evidence)


def min_sparsity(rules: Rules, evidence: Evidence) -> RuleResult:
    """Fraction of zero weights (``green/model_sparsity``, 0..1) at least the minimum."""
    return _at_least("min_sparsity", schema.MODEL_SPARSITY, float(rules.min_sparsity or 0.0), "", evidence)


def measured_only(rules: Rules, evidence: Evidence) -> RuleResult:
    """Energy measured, not estimated: the run's ``green.estimated`` tag is ``false``.

    With ``measured_only = false`` the rule is recorded as passed (estimates allowed).
    """
    rule = "measured_only"
    key = schema.TAG_ESTIMATED
    if not rules.measured_only:
        return RuleResult(rule, True, None, False, "", "estimates allowed", skipped=True)
    if evidence.missing_run is not None:
        return RuleResult(rule, False, None, True, "", evidence.missing_run)
    value = evidence.tags.get(key)
    meters = evidence.tags.get(schema.TAG_METERS)
    how = f", {schema.TAG_METERS}={meters}" if meters else ""
    if value is None:
        return RuleResult(rule, False, None, True, "", f"not logged (no {key} tag: energy was not measured by mlflow-green)")
    normalized = value.strip().lower()
    if normalized == "false":
        return RuleResult(rule, True, "measured", True, "", f"measured ({key}=false{how})")
    if normalized == "true":
        return RuleResult(rule, False, "estimated", True, "", f"energy is estimated ({key}=true{how}); measured energy required")
    return RuleResult(rule, False, value, True, "", f"unrecognised {key}={value!r}; measured energy required")


def require_signed(rules: Rules, evidence: Evidence) -> RuleResult:
    """The run's green values carry a valid signature (``green.signature``) by a trusted key,
    and none of them changed since it was signed (see :mod:`mlflow_green.record.signing`).

    When the section's rules read inference figures from another run (the evaluation named by
    ``green.inference_run``), that run's signature is verified too and its problem is named
    after ``evaluation run <id> (green.inference_run):``, in the same words.
    """
    rule = "require_signed"
    if not rules.require_signed:
        return RuleResult(rule, True, None, False, "", "unsigned measurements allowed", skipped=True)
    if evidence.missing_run is not None:
        return RuleResult(rule, False, None, True, "", evidence.missing_run)
    verification = evidence.signature
    if verification is None:
        return RuleResult(rule, False, None, True, "", "the signature was not verified (no verifier configured)")
    inference = evidence.inference
    if inference is None or inference.missing is not None or inference.run_id == evidence.run_id:
        # no inference figures read, none found (their rules fail), or they are in the source run
        return RuleResult(rule, verification.ok, verification.status, True, "", verification.reason)
    evaluated = inference.signature
    where = f"evaluation run {inference.run_id} ({inference.via})"
    if evaluated is None:
        evaluated_detail, evaluated_ok, evaluated_status = f"{where}: the signature was not verified", False, "unsigned"
    else:
        evaluated_detail, evaluated_ok, evaluated_status = f"{where}: {evaluated.reason}", evaluated.ok, evaluated.status
    if not verification.ok:  # the source run's problem first, in the training's own words
        detail = verification.reason if evaluated_ok else f"{verification.reason}; {evaluated_detail}"
        return RuleResult(rule, False, verification.status, True, "", detail)
    return RuleResult(rule, evaluated_ok, evaluated_status, True, "", f"{verification.reason}; {evaluated_detail}")


def beat_current_by_percent(rules: Rules, evidence: Evidence) -> RuleResult:
    """Accuracy per kWh at least ``(1 + X/100)`` × that of the version holding the alias now.

    When nothing holds the alias (or stage) now, the version that held it last (which the gate
    remembers) is the one to beat. Passes with a note when no version ever held it, when the
    checked version already holds it, or when the holder has no accuracy per kWh logged (an
    unmeasured incumbent does not block a measured successor). An impossible holder value
    (NaN, infinite, negative) is a failure to compare, not a pass. Skipped when no alias or
    stage is given.
    """
    rule = "beat_current_by_percent"
    percent = float(rules.beat_current_by_percent or 0.0)
    if evidence.target is None:
        return RuleResult(rule, True, None, percent, "%", "no alias or stage given to compare with; skipped", skipped=True)
    incumbent = evidence.incumbent
    if incumbent is None:
        return RuleResult(rule, True, None, percent, "%", f"no version holds {evidence.target} yet, nor did any before")
    if evidence.version is not None and incumbent.version == evidence.version:
        held = "held" if incumbent.remembered else "already holds"
        return RuleResult(rule, True, None, percent, "%", f"this version {held} {evidence.target}")
    actual = _read(rule, schema.ACCURACY_PER_KWH, percent, "1/kWh", evidence)
    if isinstance(actual, RuleResult):
        return actual
    who = f"version {incumbent.version} ({incumbent.holds})"
    live = incumbent.accuracy_per_kwh
    if live is not None:
        problem = impossible_value(schema.ACCURACY_PER_KWH, float(live), {})
        if problem is not None:
            return RuleResult(rule, False, actual, None, "1/kWh", f"cannot compare with {who}: {problem}")
    recorded = incumbent.recorded_accuracy_per_kwh
    if recorded is not None and (not math.isfinite(recorded) or recorded < 0):
        recorded = None
    if live is None and recorded is None:
        detail = f"{who} has no {schema.ACCURACY_PER_KWH} logged; nothing to beat"
        return RuleResult(rule, True, actual, None, "1/kWh", detail)
    current = max(v for v in (live, recorded) if v is not None)
    source = " when the gate promoted it" if live is None or (recorded is not None and recorded > live) else ""
    needed = current * (1.0 + percent / 100.0)
    passed = actual >= needed
    sign = ">=" if passed else "<"
    detail = (
        f"{fmt(actual, '1/kWh')} {sign} {fmt(needed, '1/kWh')} "
        f"(version {incumbent.version}, which {incumbent.holds}: {fmt(current, '1/kWh')}{source}, + {percent:g} %)"
    )
    return RuleResult(rule, passed, actual, needed, "1/kWh", detail)
