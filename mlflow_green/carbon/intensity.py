"""The carbon-intensity value type and the live-provider interface.

Example:
    >>> CarbonIntensity("FRA", "France", 50.0, "example data").emissions_kg(3.6e6)
    0.05
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import ClassVar

from mlflow_green.errors import ConfigError
from mlflow_green.units import G_PER_KG, joules_to_kwh

WORLD = "WORLD"
"""The region code of the world average, used when no region is configured."""

ENV_REGION = "MLFLOW_GREEN_REGION"
"""The environment variable that sets the region."""

REGIONS_COMMAND = "mlflow-green regions"
"""The CLI command that lists every known region."""


@dataclass(frozen=True)
class CarbonIntensity:
    """The carbon intensity of the electricity in one region, with where it came from.

    Attributes:
        region: Canonical region code: ISO 3166 alpha-3 country (``"FRA"``), US state
            (``"US-CA"``), Canadian province (``"CA-QC"``) or ``"WORLD"``.
        region_name: Human-readable name, e.g. ``"France"``.
        intensity_g_per_kwh: Grams of CO2-equivalent per kWh.
        source: Dataset and version, for the ``green.intensity_source`` tag.
        method: ``"offline"`` or the name of the live provider that answered.

    Example:
        >>> ci = CarbonIntensity("FRA", "France", 50.0, "example data")
        >>> ci.emissions_kg(3.6e6, pue=1.2)  # 1 kWh at the plug, 1.2 kWh with cooling
        0.06
    """

    region: str
    region_name: str
    intensity_g_per_kwh: float
    source: str
    method: str = "offline"

    def __post_init__(self) -> None:
        if not isinstance(self.region, str) or not self.region:
            raise ConfigError(f"CarbonIntensity.region must be a non-empty string, got {self.region!r}")
        value = self.intensity_g_per_kwh
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(
                f"CarbonIntensity.intensity_g_per_kwh must be a finite number >= 0, got {value!r}"
            )

    def emissions_kg(self, energy_j: float, pue: float = 1.0) -> float:
        """Emissions in kgCO2e of ``energy_j`` joules of IT energy in a facility of this PUE.

        Args:
            energy_j: IT energy (what the meters measured), in joules.
            pue: Power usage effectiveness of the facility (1.0 = no overhead).

        Returns:
            ``energy_kwh * pue * intensity_g_per_kwh / 1000``.

        Example:
            >>> CarbonIntensity("WORLD", "World", 475.0, "x").emissions_kg(7.2e6)
            0.95
        """
        return joules_to_kwh(energy_j) * pue * self.intensity_g_per_kwh / G_PER_KG


class IntensityProvider(abc.ABC):
    """A live carbon-intensity provider, registered by a plugin and used only when named.

    Implementations may go online; mlflow-green calls them only when the user sets
    ``intensity_provider=`` or ``MLFLOW_GREEN_INTENSITY_PROVIDER``. If one raises, the offline
    table is used instead and the source says so.

    Example:
        >>> class Constant(IntensityProvider):
        ...     name = "constant"
        ...     def intensity(self, region):
        ...         return CarbonIntensity(region or WORLD, "anywhere", 100.0, "constant 1.0", self.name)
        >>> Constant().intensity("FRA").method
        'constant'
    """

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def intensity(self, region: str | None) -> CarbonIntensity:
        """The current carbon intensity of ``region`` (a canonical code when mlflow-green knows it)."""
