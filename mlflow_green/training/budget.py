"""Energy and emissions budgets for a training: stop before the budget is exceeded.

Example:
    >>> budget = EnergyBudget(max_energy_kwh=0.5)
    >>> budget.check(energy_kwh=0.3, emissions_kg=0.1, next_epoch_kwh=0.1, next_epoch_kg=0.01) is None
    True
    >>> print(budget.check(energy_kwh=0.45, emissions_kg=0.1, next_epoch_kwh=0.1, next_epoch_kg=0.01))
    energy budget 0.5 kWh: 0.45 kWh used, the next epoch (~0.1 kWh) would exceed it
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from mlflow_green.errors import ConfigError


def _limit(value: object, name: str, unit: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be a finite number of {unit} > 0 or None, got {value!r}")
    if float(value) <= 0:
        raise ConfigError(f"{name} must be > 0 {unit} (or None for no budget), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class EnergyBudget:
    """At most ``max_energy_kwh`` of IT energy and ``max_emissions_kg`` of CO2e for a training.

    Validated at construction: each limit is None (no budget) or a finite number > 0.

    Checked at each epoch end: training stops when the budget is used up, or when the next
    epoch, at the mean energy of the epochs so far, would exceed it. Checked every few seconds
    within an epoch too, for the actual use only.
    """

    max_energy_kwh: float | None = None
    max_emissions_kg: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_energy_kwh", _limit(self.max_energy_kwh, "max_energy_kwh", "kWh"))
        object.__setattr__(self, "max_emissions_kg", _limit(self.max_emissions_kg, "max_emissions_kg", "kg"))

    @property
    def active(self) -> bool:
        """True if any limit is set."""
        return self.max_energy_kwh is not None or self.max_emissions_kg is not None

    def check(
        self,
        *,
        energy_kwh: float,
        emissions_kg: float,
        next_epoch_kwh: float | None = None,
        next_epoch_kg: float | None = None,
    ) -> str | None:
        """Why training must stop now, or None to go on."""
        checks = (
            ("energy", self.max_energy_kwh, energy_kwh, next_epoch_kwh, "kWh"),
            ("emissions", self.max_emissions_kg, emissions_kg, next_epoch_kg, "kg"),
        )
        for what, limit, used, nxt, unit in checks:
            if limit is None:
                continue
            if used >= limit:
                return f"{what} budget {limit:g} {unit}: {used:.4g} {unit} used, budget exhausted"
            if nxt is not None and used + nxt > limit:
                return f"{what} budget {limit:g} {unit}: {used:.4g} {unit} used, the next epoch (~{nxt:.4g} {unit}) would exceed it"
        return None
