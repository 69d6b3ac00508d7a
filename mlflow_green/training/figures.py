"""The metric dicts a session logs at an epoch end and at the end of a fit (pure, no I/O).

Example:
    >>> from mlflow_green.config import GreenConfig
    >>> cfg = GreenConfig.resolve(region="FR", environ={})
    >>> projection_metrics(3.6e6, cfg)["green/projected_energy_kwh"]
    1.0
"""

from __future__ import annotations

from collections.abc import Mapping

from mlflow_green.config import GreenConfig
from mlflow_green.measure.readings import Measurement
from mlflow_green.record import schema
from mlflow_green.record.metrics import energy_metrics, phase_metrics
from mlflow_green.training.budget import EnergyBudget
from mlflow_green.units import joules_to_kwh


def running_metrics(
    total: Measurement,
    config: GreenConfig,
    *,
    window: Measurement | None,
    train_samples: int | None,
    phases_j: Mapping[str, float],
    quality: tuple[str, float] | None,
) -> dict[str, float]:
    """Running totals (energy, emissions, duration, per component, per phase in joules) and quality per kWh."""
    metrics = energy_metrics(total, config.carbon, config.pue, window=window, samples=train_samples)
    metrics.update(phase_metrics(phases_j))
    if quality is not None and total.energy_j > 0:
        metrics[schema.QUALITY] = quality[1]
        metrics[schema.ACCURACY_PER_KWH] = quality[1] / joules_to_kwh(total.energy_j)
    return metrics


def projection_metrics(projected_j: float | None, config: GreenConfig) -> dict[str, float]:
    """``green/projected_energy_kwh`` and ``green/projected_emissions_kg`` (empty without a projection)."""
    if projected_j is None:
        return {}
    return {
        schema.PROJECTED_ENERGY_KWH: joules_to_kwh(projected_j),
        schema.PROJECTED_EMISSIONS_KG: config.carbon.emissions_kg(projected_j, config.pue),
    }


def efficiency_metrics(flops: float | None, total: Measurement) -> dict[str, float]:
    """``green/flop_per_j``: the FLOPs of the samples processed (see :class:`~mlflow_green.training.run_flops.RunFlops`)
    per joule; none without them."""
    if not flops or flops <= 0 or total.energy_j <= 0:
        return {}
    return {schema.FLOP_PER_J: flops / total.energy_j}


def budget_reason(budget: EnergyBudget, config: GreenConfig, total: Measurement, *, next_epoch_j: float | None) -> str | None:
    """Why ``budget`` says training must stop now, or None."""
    if not budget.active:
        return None
    return budget.check(
        energy_kwh=joules_to_kwh(total.energy_j),
        emissions_kg=config.carbon.emissions_kg(total.energy_j, config.pue),
        next_epoch_kwh=joules_to_kwh(next_epoch_j) if next_epoch_j is not None else None,
        next_epoch_kg=config.carbon.emissions_kg(next_epoch_j, config.pue) if next_epoch_j is not None else None,
    )
