"""A validated gate policy: the effective rules per alias and per stage, and which apply to a request.

Built by :func:`~mlflow_green.gates.policy.load_policy` / ``loads_policy`` / ``parse_policy``
(where the file format is documented); alias and stage rules already include the ``[default]``
ones they inherit.

Example:
    >>> from mlflow_green.gates.rules import Rules
    >>> policy = Policy(Rules(max_energy_kwh=1.0), stages={"Production": Rules(section="stages.Production")})
    >>> policy.covers(stage="production"), policy.covers(alias="champion")
    (True, False)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlflow_green.errors import ArgumentTypeError, PolicyError
from mlflow_green.gates.rules import Rules

WILDCARD = "*"
"""An ``[aliases."*"]`` / ``[stages."*"]`` table covers every alias / stage not listed by name."""

STAGES = ("None", "Staging", "Production", "Archived")  # MLflow's model-version stages


@dataclass(frozen=True)
class Policy:
    """A validated gate policy: ``[default]`` rules, and effective rules per alias and per stage.

    Alias and stage rules already include the ``[default]`` ones they inherit.

    Attributes:
        default: The ``[default]`` rules; None when the file has no ``[default]`` table.
        aliases: Alias -> effective rules (``"*"`` covers the aliases not listed).
        stages: Canonical stage (``Production``) -> effective rules (``"*"`` covers the others).
        source: Where the policy came from (a file path, or ``<string>``).
        digest: SHA-256 of the policy's bytes, to tell which policy checked a version.

    Example:
        >>> from mlflow_green.gates.policy import parse_policy
        >>> policy = parse_policy({"default": {"max_energy_kwh": 1}, "stages": {"production": {}}})
        >>> policy.for_stage("PRODUCTION").section, policy.for_stage("PRODUCTION").max_energy_kwh
        ('stages.Production', 1.0)
        >>> policy.covers(alias="champion"), policy.covers(stage="Production")
        (False, True)
    """

    default: Rules | None
    aliases: Mapping[str, Rules] = field(default_factory=dict)
    stages: Mapping[str, Rules] = field(default_factory=dict)
    source: str = "<policy>"
    digest: str = ""

    @property
    def name(self) -> str:
        """The policy file's name (``green-policy.toml``), or its source when not a file."""
        return Path(self.source).name if not self.source.startswith("<") else self.source

    def for_alias(self, alias: str) -> Rules | None:
        """The rules for setting ``alias``; None when the policy does not cover it."""
        if not isinstance(alias, str):
            raise ArgumentTypeError("alias", "an alias name (str)", alias)
        return self.aliases.get(alias) or self.aliases.get(WILDCARD)

    def for_stage(self, stage: str) -> Rules | None:
        """The rules for a transition to ``stage`` (any case); None when not covered."""
        if not isinstance(stage, str):
            raise ArgumentTypeError("stage", "a stage name (str)", stage)
        canonical = canonical_stage(stage)
        if canonical is None:
            return None
        return self.stages.get(canonical) or self.stages.get(WILDCARD)

    def covers(self, *, alias: str | None = None, stage: str | None = None) -> bool:
        """Whether setting ``alias`` (or moving to ``stage``) is gated by this policy."""
        if alias is not None:
            return self.for_alias(alias) is not None
        if stage is not None:
            return self.for_stage(stage) is not None
        return self.default is not None

    def rules(self, *, alias: str | None = None, stage: str | None = None) -> Rules:
        """The rules that apply: an alias's, a stage's, or ``[default]`` when neither is given.

        Raises:
            PolicyError: Both given, or the policy has no rules for it (an uncovered alias or
                stage, or no ``[default]`` table when neither is given).
        """
        if alias is not None and not isinstance(alias, str):
            raise ArgumentTypeError("alias", "an alias name (str) or None", alias)
        if stage is not None and not isinstance(stage, str):
            raise ArgumentTypeError("stage", "a stage name (str) or None", stage)
        if alias is not None and stage is not None:
            raise PolicyError(None, None, "give an alias or a stage, not both", source=self.source)
        if alias is not None:
            rules = self.for_alias(alias)
            what, covered = f"alias {alias!r}", sorted(self.aliases)
            table = "aliases"
        elif stage is not None:
            rules = self.for_stage(stage)
            what, covered = f"stage {stage!r}", sorted(self.stages)
            table = "stages"
        else:
            if self.default is None:
                raise PolicyError(
                    None, None, "the policy has no [default] table; give an alias or a stage to check", source=self.source
                )
            return self.default
        if rules is None:
            listed = ", ".join(covered) or "none"
            raise PolicyError(None, table, f"the policy has no rules for {what} (covered: {listed})", source=self.source)
        return rules

    def sections(self) -> tuple[Rules, ...]:
        """Every section's effective rules: ``[default]`` (if any), then the aliases', then the stages'."""
        return (*((self.default,) if self.default is not None else ()), *self.aliases.values(), *self.stages.values())

    def label(self, rules: Rules) -> str:
        """What the ``green.gate.policy`` tag says: file, section and digest, e.g.
        ``green-policy.toml [aliases.champion] sha256:3f2a9c1b04de``."""
        digest = f" sha256:{self.digest[:12]}" if self.digest else ""
        return f"{self.name} [{rules.section}]{digest}"


def canonical_stage(stage: str) -> str | None:
    """MLflow's spelling of a stage given in any case (``production`` -> ``Production``); None if unknown.

    Example:
        >>> canonical_stage("production"), canonical_stage("prod")
        ('Production', None)
    """
    if not isinstance(stage, str):
        return None
    return next((s for s in STAGES if s.lower() == stage.strip().lower()), None)
