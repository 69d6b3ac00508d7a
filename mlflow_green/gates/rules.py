"""The gate rules: one small function per rule, pure (no MLflow I/O).

Each rule reads the *evidence* about a model version (its source run's latest metrics and
tags, and the version that holds the alias now) and returns a :class:`RuleResult` with the
actual value, the limit and a readable detail. A measurement that is missing never passes:
the rule fails with ``not logged`` — except the inference-energy rule, which is skipped with a
note when inference energy was not logged, unless the policy sets
``require_inference_energy = true``.

Example:
    >>> rules = Rules(max_energy_kwh=0.5, measured_only=True)
    >>> evidence = Evidence(run_id="r1", metrics={"green/energy_kwh": 0.8}, tags={"green.estimated": "false"})
    >>> for result in evaluate(rules, evidence):
    ...     print(result.rule, result.passed, result.detail)
    max_energy_kwh False 0.8 kWh > limit 0.5 kWh
    measured_only True measured (green.estimated=false)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal

from mlflow_green.record import schema

RuleKind = Literal["number", "fraction", "bool"]


@dataclass(frozen=True)
class Rules:
    """The effective rules of one policy section (``[default]`` merged with an alias or stage table).

    ``None`` means the rule is not part of the policy. Numbers are limits in the unit of the key.

    Example:
        >>> Rules(max_energy_kwh=0.5).active()
        ('max_energy_kwh',)
        >>> Rules(max_energy_kwh=0.5).merged(Rules(section="aliases.staging", max_energy_kwh=2.0)).max_energy_kwh
        2.0
    """

    section: str = "default"
    max_energy_kwh: float | None = None
    max_emissions_kg: float | None = None
    min_accuracy_per_kwh: float | None = None
    max_energy_per_sample_predict_j: float | None = None
    require_inference_energy: bool | None = None
    max_model_size_bytes: float | None = None
    min_sparsity: float | None = None
    measured_only: bool | None = None
    beat_current_by_percent: float | None = None

    def active(self) -> tuple[str, ...]:
        """The rule keys this section checks, in evaluation order (modifiers excluded)."""
        return tuple(key for key, spec in RULE_SPECS.items() if spec.evaluate is not None and self.value(key) is not None)

    def value(self, key: str) -> Any:
        """The setting of one policy key (None when unset)."""
        return getattr(self, key)

    def merged(self, override: Rules) -> Rules:
        """These rules with every key that ``override`` sets replaced; the section is ``override``'s."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update({f.name: getattr(override, f.name) for f in fields(override) if getattr(override, f.name) is not None})
        values["section"] = override.section
        return Rules(**values)

    def to_dict(self) -> dict[str, Any]:
        """The keys that are set, as in the policy file."""
        return {key: self.value(key) for key in RULE_SPECS if self.value(key) is not None}


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule on one model version.

    Attributes:
        rule: The policy key, e.g. ``max_energy_kwh``.
        passed: Whether the version satisfies the rule (a skipped rule counts as passed).
        actual: The version's value (a number, or a word such as ``estimated``); None if not logged.
        limit: The policy's limit (a number, or True for a boolean rule).
        unit: Unit of ``actual`` and ``limit`` (``kWh``, ``kg``, ``1/kWh``, ``J``, ``bytes``, ``""``).
        detail: One readable line, e.g. ``0.8 kWh > limit 0.5 kWh`` or ``not logged (green/energy_kwh)``.
        skipped: True when the rule did not apply (e.g. inference energy not logged and not required).

    Example:
        >>> RuleResult("max_energy_kwh", False, 0.8, 0.5, "kWh", "0.8 kWh > limit 0.5 kWh").status
        'FAIL'
    """

    rule: str
    passed: bool
    actual: float | str | None
    limit: float | bool | None
    unit: str
    detail: str
    skipped: bool = False

    @property
    def status(self) -> str:
        """``PASS``, ``FAIL`` or ``SKIP``."""
        return "SKIP" if self.skipped else "PASS" if self.passed else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rule": self.rule,
            "status": self.status,
            "passed": self.passed,
            "actual": self.actual,
            "limit": self.limit,
            "unit": self.unit,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Incumbent:
    """The version that holds the alias (or stage) now, for ``beat_current_by_percent``.

    Attributes:
        version: Its version number.
        accuracy_per_kwh: Its source run's ``green/accuracy_per_kwh``; None if not logged.
    """

    version: str
    accuracy_per_kwh: float | None


@dataclass(frozen=True)
class Evidence:
    """What the gate knows about a model version.

    Attributes:
        run_id: The version's source run (None if the version has none).
        metrics: The source run's latest metrics (the totals, since green metrics are running totals).
        tags: The source run's tags.
        missing_run: Why there is no run to read, e.g. ``the version has no source run``; None if read.
        target: What the version is checked for, e.g. ``alias champion`` or ``stage Production``;
            None when no alias or stage is given.
        incumbent: The version that holds ``target`` now, None if none does.
        version: The checked version's number (to tell when it already holds the target).
        version_tags: The checked version's own tags (so unchanged gate tags are not rewritten).
    """

    run_id: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    missing_run: str | None = None
    target: str | None = None
    incumbent: Incumbent | None = None
    version: str | None = None
    version_tags: Mapping[str, str] = field(default_factory=dict)


def _fmt(value: float, unit: str = "") -> str:
    text = f"{value:.4g}"
    return f"{text} {unit}" if unit else text


def _metric(evidence: Evidence, key: str) -> float | None:
    value = evidence.metrics.get(key)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _not_logged(rule: str, key: str, limit: float | bool, unit: str, evidence: Evidence) -> RuleResult:
    why = evidence.missing_run or f"not logged ({key})"
    return RuleResult(rule, False, None, limit, unit, why)


def _at_most(rule: str, key: str, limit: float, unit: str, evidence: Evidence) -> RuleResult:
    actual = _metric(evidence, key)
    if actual is None:
        return _not_logged(rule, key, limit, unit, evidence)
    passed = actual <= limit
    sign = "<=" if passed else ">"
    return RuleResult(rule, passed, actual, limit, unit, f"{_fmt(actual, unit)} {sign} limit {_fmt(limit, unit)}")


def _at_least(rule: str, key: str, limit: float, unit: str, evidence: Evidence) -> RuleResult:
    actual = _metric(evidence, key)
    if actual is None:
        return _not_logged(rule, key, limit, unit, evidence)
    passed = actual >= limit
    sign = ">=" if passed else "<"
    return RuleResult(rule, passed, actual, limit, unit, f"{_fmt(actual, unit)} {sign} minimum {_fmt(limit, unit)}")


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
    key = schema.phase_energy_per_sample_key("predict")
    limit = float(rules.max_energy_per_sample_predict_j or 0.0)
    rule = "max_energy_per_sample_predict_j"
    if _metric(evidence, key) is None and not rules.require_inference_energy and evidence.missing_run is None:
        note = f"not logged ({key}); skipped — set require_inference_energy = true to require it"
        return RuleResult(rule, True, None, limit, "J", note, skipped=True)
    return _at_most(rule, key, limit, "J", evidence)


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


def beat_current_by_percent(rules: Rules, evidence: Evidence) -> RuleResult:
    """Accuracy per kWh at least ``(1 + X/100)`` × that of the version holding the alias now.

    Passes with a note when no version holds the alias (or stage) yet, when the checked version
    already holds it, or when the current holder has no accuracy per kWh logged (an unmeasured
    incumbent does not block a measured successor). Skipped when no alias or stage is given.
    """
    rule = "beat_current_by_percent"
    percent = float(rules.beat_current_by_percent or 0.0)
    if evidence.target is None:
        return RuleResult(rule, True, None, percent, "%", "no alias or stage given to compare with; skipped", skipped=True)
    incumbent = evidence.incumbent
    if incumbent is None:
        return RuleResult(rule, True, None, percent, "%", f"no version holds {evidence.target} yet")
    if evidence.version is not None and incumbent.version == evidence.version:
        return RuleResult(rule, True, None, percent, "%", f"this version already holds {evidence.target}")
    actual = _metric(evidence, schema.ACCURACY_PER_KWH)
    if actual is None:
        return _not_logged(rule, schema.ACCURACY_PER_KWH, percent, "1/kWh", evidence)
    current = incumbent.accuracy_per_kwh
    if current is None or not math.isfinite(current):
        detail = f"version {incumbent.version} (holds {evidence.target}) has no {schema.ACCURACY_PER_KWH} logged; nothing to beat"
        return RuleResult(rule, True, actual, None, "1/kWh", detail)
    needed = current * (1.0 + percent / 100.0)
    passed = actual >= needed
    sign = ">=" if passed else "<"
    detail = (
        f"{_fmt(actual, '1/kWh')} {sign} {_fmt(needed, '1/kWh')} "
        f"(version {incumbent.version}, which holds {evidence.target}: {_fmt(current, '1/kWh')}, + {percent:g} %)"
    )
    return RuleResult(rule, passed, actual, needed, "1/kWh", detail)


@dataclass(frozen=True)
class RuleSpec:
    """One policy key: its type, unit and the function that checks it (None for modifiers)."""

    key: str
    kind: RuleKind
    unit: str
    help: str
    evaluate: Callable[[Rules, Evidence], RuleResult] | None


RULE_SPECS: Mapping[str, RuleSpec] = MappingProxyType(
    {
        spec.key: spec
        for spec in (
            RuleSpec("max_energy_kwh", "number", "kWh", "maximum training energy (green/energy_kwh)", max_energy_kwh),
            RuleSpec("max_emissions_kg", "number", "kg", "maximum emissions (green/emissions_kg)", max_emissions_kg),
            RuleSpec("min_accuracy_per_kwh", "number", "1/kWh", "minimum quality per kWh (green/accuracy_per_kwh)", min_accuracy_per_kwh),
            RuleSpec(
                "max_energy_per_sample_predict_j",
                "number",
                "J",
                "maximum inference energy per sample (green/energy_per_sample_predict_j), when logged",
                max_energy_per_sample_predict_j,
            ),
            RuleSpec(
                "require_inference_energy",
                "bool",
                "",
                "fail max_energy_per_sample_predict_j when inference energy is not logged",
                None,
            ),
            RuleSpec("max_model_size_bytes", "number", "bytes", "maximum model size (green/model_size_bytes)", max_model_size_bytes),
            RuleSpec("min_sparsity", "fraction", "", "minimum fraction of zero weights, 0..1 (green/model_sparsity)", min_sparsity),
            RuleSpec("measured_only", "bool", "", "reject estimated energy (green.estimated must be false)", measured_only),
            RuleSpec(
                "beat_current_by_percent",
                "number",
                "%",
                "accuracy per kWh at least X % above the version holding the alias or stage now",
                beat_current_by_percent,
            ),
        )
    }
)
"""Every policy key, in evaluation order."""


def evaluate(rules: Rules, evidence: Evidence) -> tuple[RuleResult, ...]:
    """Check every rule the section sets, in :data:`RULE_SPECS` order."""
    results = []
    for key in rules.active():
        check = RULE_SPECS[key].evaluate
        assert check is not None
        results.append(check(rules, evidence))
    return tuple(results)
