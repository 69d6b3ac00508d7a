"""Unit conversions. Everything inside mlflow-green is SI (J, W, s); kWh only at the MLflow boundary."""

from __future__ import annotations

J_PER_KWH = 3.6e6
"""Joules in one kilowatt-hour."""

G_PER_KG = 1000.0


def joules_to_kwh(energy_j: float) -> float:
    """Convert joules to kilowatt-hours.

    Example:
        >>> joules_to_kwh(3.6e6)
        1.0
    """
    return energy_j / J_PER_KWH


def kwh_to_joules(energy_kwh: float) -> float:
    """Convert kilowatt-hours to joules.

    Example:
        >>> kwh_to_joules(0.5)
        1800000.0
    """
    return energy_kwh * J_PER_KWH
