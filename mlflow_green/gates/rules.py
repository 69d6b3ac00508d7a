"""The gate rules: the settings of a policy section, every policy key, and their evaluation (pure, no MLflow I/O).

Each rule (:mod:`mlflow_green.gates.rule_checks`) reads the *evidence* about a model version
(its source run's latest metrics and tags, the version that holds the alias now, the run's
signature) and returns a :class:`RuleResult` with the actual value, the limit and a readable
detail. A measurement that is missing or impossible never passes: the rule fails with
``not logged`` or names the impossible value — except the inference-energy rule, which is
skipped with a note when inference energy was not logged, unless the policy sets
``require_inference_energy = true``.

Example:
    >>> rules = Rules(max_energy_kwh=0.5, measured_only=True)
    >>> evidence = Evidence(run_id="r1", metrics={"green/energy_kwh": 0.8}, tags={"green.estimated": "false"})
    >>> for result in evaluate(rules, evidence):
    ...     print(result.rule, result.passed, result.detail)
    max_energy_kwh False 800 Wh > limit 500 Wh
    measured_only True measured (green.estimated=false)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Literal

from mlflow_green.errors import ArgumentTypeError
from mlflow_green.gates.evidence import Evidence, Incumbent
from mlflow_green.gates.inference_rules import (
    max_inference_energy_per_prediction_j,
    max_inference_latency_ms,
    require_inference_measurement,
)
from mlflow_green.gates.outcome import RuleResult
from mlflow_green.gates.rule_checks import (
    beat_current_by_percent,
    max_emissions_kg,
    max_energy_kwh,
    max_energy_per_sample_predict_j,
    max_model_size_bytes,
    measured_only,
    min_accuracy_per_kwh,
    min_sparsity,
    require_signed,
)

__all__ = ["RULE_SPECS", "Evidence", "Incumbent", "RuleResult", "RuleSpec", "Rules", "evaluate"]

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
    max_inference_energy_per_prediction_j: float | None = None
    max_inference_latency_ms: float | None = None
    require_inference_measurement: bool | None = None
    max_model_size_bytes: float | None = None
    min_sparsity: float | None = None
    measured_only: bool | None = None
    require_signed: bool | None = None
    beat_current_by_percent: float | None = None

    def active(self) -> tuple[str, ...]:
        """The rule keys this section evaluates, in evaluation order (modifiers excluded)."""
        return tuple(key for key, spec in RULE_SPECS.items() if spec.evaluate is not None and self.value(key) is not None)

    def checks(self) -> tuple[str, ...]:
        """The rules that can fail a version: :meth:`active` less boolean rules set to false.

        Example:
            >>> Rules(measured_only=False).checks(), Rules(measured_only=True, max_energy_kwh=1.0).checks()
            ((), ('max_energy_kwh', 'measured_only'))
        """
        return tuple(key for key in self.active() if self.value(key) is not False)

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
            RuleSpec(
                "max_inference_energy_per_prediction_j",
                "number",
                "J",
                "maximum inference energy per prediction (green/inference_energy_per_prediction_j of the "
                "version's green.inference_run evaluation)",
                max_inference_energy_per_prediction_j,
            ),
            RuleSpec(
                "max_inference_latency_ms",
                "number",
                "ms",
                "maximum median latency of one call (green/inference_latency_ms of the version's evaluation)",
                max_inference_latency_ms,
            ),
            RuleSpec(
                "require_inference_measurement",
                "bool",
                "",
                "the version has a green evaluation (green.inference_run); measured, not estimated, with measured_only",
                require_inference_measurement,
            ),
            RuleSpec("max_model_size_bytes", "number", "bytes", "maximum model size (green/model_size_bytes)", max_model_size_bytes),
            RuleSpec("min_sparsity", "fraction", "", "minimum fraction of zero weights, 0..1 (green/model_sparsity)", min_sparsity),
            RuleSpec("measured_only", "bool", "", "reject estimated energy (green.estimated must be false)", measured_only),
            RuleSpec(
                "require_signed",
                "bool",
                "",
                "the run's green values signed by a key in MLFLOW_GREEN_TRUSTED_KEYS and unchanged since",
                require_signed,
            ),
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
    """Check every rule the section sets, in :data:`RULE_SPECS` order.

    Raises:
        ArgumentTypeError: ``rules`` is not a :class:`Rules` or ``evidence`` not an :class:`Evidence`.
    """
    if not isinstance(rules, Rules):
        raise ArgumentTypeError("rules", "a Rules (e.g. policy.rules(alias='champion'))", rules)
    if not isinstance(evidence, Evidence):
        raise ArgumentTypeError("evidence", "an Evidence", evidence)
    results = []
    for key in rules.active():
        check = RULE_SPECS[key].evaluate
        assert check is not None
        results.append(check(rules, evidence))
    return tuple(results)
