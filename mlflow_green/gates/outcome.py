"""The outcome of one rule on one model version.

Example:
    >>> RuleResult("max_energy_kwh", False, 0.8, 0.5, "kWh", "0.8 kWh > limit 0.5 kWh").to_dict()["status"]
    'FAIL'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
