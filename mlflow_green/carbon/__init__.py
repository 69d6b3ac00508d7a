"""Carbon: kg CO2e from joules — the intensity in force, offline by default.

- :mod:`~mlflow_green.carbon.intensity`: :class:`CarbonIntensity` and the live-provider interface.
- :mod:`~mlflow_green.carbon.offline`: the table CodeCarbon ships, read as files (no network).
- :mod:`~mlflow_green.carbon.providers`: choosing a named live provider, else the table.

Example:
    >>> from mlflow_green.carbon import offline_intensity
    >>> offline_intensity("fr").region
    'FRA'
"""

from __future__ import annotations

from mlflow_green.carbon.intensity import ENV_REGION, REGIONS_COMMAND, WORLD, CarbonIntensity, IntensityProvider
from mlflow_green.carbon.offline import known_regions, offline_intensity
from mlflow_green.carbon.providers import resolve_intensity

__all__ = [
    "ENV_REGION",
    "REGIONS_COMMAND",
    "WORLD",
    "CarbonIntensity",
    "IntensityProvider",
    "known_regions",
    "offline_intensity",
    "resolve_intensity",
]
