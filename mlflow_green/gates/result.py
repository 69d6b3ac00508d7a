"""The outcome of a gate check: passed or not, each rule with its actual value and limit.

Example:
    >>> from mlflow_green.gates.outcome import RuleResult
    >>> result = GateResult(
    ...     model="digits", version="3", passed=False, policy="green-policy.toml [aliases.champion]",
    ...     rules=(RuleResult("max_energy_kwh", False, 0.8, 0.5, "kWh", "0.8 kWh > limit 0.5 kWh"),),
    ...     alias="champion",
    ... )
    >>> result.tags()["green.gate"], result.tags()["green.gate.reasons"]
    ('failed', 'max_energy_kwh: 0.8 kWh > limit 0.5 kWh')
    >>> result.summary()
    "gate failed for model 'digits' version 3 (alias champion): max_energy_kwh: 0.8 kWh > limit 0.5 kWh"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlflow_green.formatting import plural
from mlflow_green.gates.holders import holder_tag_value
from mlflow_green.gates.outcome import RuleResult
from mlflow_green.record import schema

PASSED = "passed"
FAILED = "failed"
MAX_TAG_VALUE_CHARS = 5000
"""Model-version tag values are cut to this length (MLflow's limit on some stores)."""


@dataclass(frozen=True)
class GateResult:
    """Whether a model version passes a policy, and why.

    Attributes:
        model: Registered model name.
        version: Model version (a string, as MLflow's registry keeps it).
        passed: True when every rule passed (skipped rules count as passed).
        rules: Every rule checked, in policy order, with actual value, limit and detail.
        policy: Which policy section checked it (the ``green.gate.policy`` tag), e.g.
            ``green-policy.toml [aliases.champion] sha256:3f2a9c1b04de``.
        run_id: The version's source run (None if it has none).
        alias: The alias the version was checked for, if any.
        stage: The stage the version was checked for, if any.
        prompt: The version is a prompt version of a prompt, by what the registry says
            (:mod:`mlflow_green.gates.prompts`), not a model: the server lets its alias requests
            through and no gate tags are written on it.
        accuracy_per_kwh: The source run's ``green/accuracy_per_kwh`` (remembered for the next
            ``beat_current_by_percent`` when this version takes the alias or stage).

    Example:
        >>> GateResult(model="m", version="1", passed=True, rules=(), policy="p.toml [default]").reasons
        'no rules in the policy section'
    """

    model: str
    version: str
    passed: bool
    rules: tuple[RuleResult, ...]
    policy: str
    run_id: str | None = None
    alias: str | None = None
    stage: str | None = None
    prompt: bool = False
    accuracy_per_kwh: float | None = None

    @property
    def status(self) -> str:
        """``passed`` or ``failed`` (the ``green.gate`` tag)."""
        return PASSED if self.passed else FAILED

    @property
    def failed(self) -> tuple[RuleResult, ...]:
        """The rules that failed."""
        return tuple(r for r in self.rules if not r.passed)

    @property
    def target(self) -> str | None:
        """``alias champion``, ``stage Production`` or None."""
        if self.alias is not None:
            return f"alias {self.alias}"
        if self.stage is not None:
            return f"stage {self.stage}"
        return None

    @property
    def reasons(self) -> str:
        """The ``green.gate.reasons`` tag: each failed rule and why; on a pass, what was checked."""
        if self.failed:
            return "; ".join(f"{r.rule}: {r.detail}" for r in self.failed)
        if not self.rules:
            return "no rules in the policy section"
        checked = [r for r in self.rules if not r.skipped]
        text = _all_passed(len(checked))
        skipped = [f"{r.rule} skipped: {r.detail}" for r in self.rules if r.skipped]
        return "; ".join([text, *skipped])

    def tags(self) -> dict[str, str]:
        """The model-version tags the gate writes, in writing order: ``green.gate.reasons``,
        ``green.gate.policy``, then ``green.gate`` (last, so a reader that sees it sees the others)."""
        return {
            schema.TAG_GATE_REASONS: _cut(self.reasons),
            schema.TAG_GATE_POLICY: _cut(self.policy),
            schema.TAG_GATE: self.status,
        }

    def holder_tag(self) -> dict[str, str]:
        """The registered-model tag remembering this version as the alias's (stage's) holder;
        empty without a target. Written once the promotion succeeded."""
        if self.prompt or not self.passed or self.target is None:
            return {}
        kind, name = ("alias", self.alias) if self.alias is not None else ("stage", self.stage)
        value = holder_tag_value(version=self.version, run_id=self.run_id, accuracy_per_kwh=self.accuracy_per_kwh)
        return {schema.gate_holder_tag(kind, str(name)): value}

    def summary(self) -> str:
        """One line, e.g. for an HTTP error: what was refused and which rules failed."""
        what = f"model {self.model!r} version {self.version}"
        if self.target:
            what += f" ({self.target})"
        return f"gate {self.status} for {what}: {self.reasons}"

    def report(self) -> str:
        """A readable multi-line report (the CLI's output)."""
        verdict = "PASSED" if self.passed else "FAILED"
        head = f"Gate {verdict}: model {self.model!r} version {self.version}"
        if self.target:
            head += f" for {self.target}"
        lines = [head, f"  policy: {self.policy}", f"  source run: {self.run_id or '(none)'}"]
        width = max((len(r.rule) for r in self.rules), default=0)
        for r in self.rules:
            lines.append(f"  {r.status:<4}  {r.rule:<{width}}  {r.detail}")
        if not self.rules:
            lines.append("  (no rules in this policy section)")
        if self.failed:
            names = ", ".join(r.rule for r in self.failed)
            lines.append(f"{len(self.failed)} of {plural(len(self.rules), 'rule')} failed: {names}")
        else:
            lines.append(_all_passed(len([r for r in self.rules if not r.skipped])))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the CLI's ``--format json``, the server's error details)."""
        return {
            "model": self.model,
            "version": self.version,
            "alias": self.alias,
            "stage": self.stage,
            "run_id": self.run_id,
            "passed": self.passed,
            "status": self.status,
            "policy": self.policy,
            "failed_rules": [r.rule for r in self.failed],
            "rules": [r.to_dict() for r in self.rules],
        }


def _all_passed(checked: int) -> str:
    """``the 1 rule passed``, ``all 3 rules passed``."""
    return "the 1 rule passed" if checked == 1 else f"all {plural(checked, 'rule')} passed"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TAG_VALUE_CHARS else text[: MAX_TAG_VALUE_CHARS - 1] + "…"
