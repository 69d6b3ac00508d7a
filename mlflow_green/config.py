"""Configuration: arguments first, then ``MLFLOW_GREEN_*`` environment variables, then defaults.

Everything is validated, and the carbon intensity resolved, when a :class:`GreenConfig` is
built, so an unknown region or a PUE below 1 fails before any training starts. Every error
says what was wrong, where the value came from and what would be accepted.

- ``MLFLOW_GREEN_REGION``: carbon-intensity region (``FRA``, ``FR``, ``US-CA``, ``CA-QC``);
  default: the world average, tagged ``green.region=WORLD``.
- ``MLFLOW_GREEN_PUE``: power usage effectiveness, a number >= 1.0; default 1.0.
- ``MLFLOW_GREEN_METERS``: comma-separated meter names in priority order; default automatic.
- ``MLFLOW_GREEN_SAMPLE_INTERVAL_S``: power sampling interval in (0, 60] seconds; default 0.1.
- ``MLFLOW_GREEN_INTENSITY_PROVIDER``: a live carbon-intensity provider plugin; default offline.
- ``MLFLOW_GREEN_SCOPE``: whose energy is billed: ``process`` (default: the GPUs this process
  tree holds, its share of CPU and RAM) or ``machine`` (whole devices, for dedicated hosts).

An environment variable set to an empty string counts as unset.

Example:
    >>> cfg = GreenConfig.resolve(region="fr", pue=1.2, environ={})
    >>> cfg.carbon.region, cfg.pue, cfg.sources["pue"]
    ('FRA', 1.2, 'argument')
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mlflow_green.carbon import ENV_REGION, WORLD, CarbonIntensity, resolve_intensity
from mlflow_green.config_checks import (
    DEFAULT_PUE,
    DEFAULT_SAMPLE_INTERVAL_S,
    DEFAULT_SCOPE,
    DEFAULTS,
    ENV_INTENSITY_PROVIDER,
    ENV_METERS,
    ENV_PUE,
    ENV_SAMPLE_INTERVAL_S,
    ENV_SCOPE,
    ENV_VARS,
    FROM_ARGUMENT,
    FROM_DEFAULT,
    INTERVAL_RULE,
    MAX_PUE,
    MAX_SAMPLE_INTERVAL_S,
    PUE_RULE,
    SCOPES,
    check_interval,
    check_meters,
    check_provider,
    check_pue,
    check_scope,
    implicit_source,
    interval_ok,
    origin_of,
    pue_ok,
)
from mlflow_green.errors import ConfigError, UnknownRegionError
from mlflow_green.validation import parse_env_number

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PUE", "DEFAULT_SAMPLE_INTERVAL_S", "DEFAULT_SCOPE", "ENV_INTENSITY_PROVIDER", "ENV_METERS", "ENV_PUE",
    "ENV_REGION", "ENV_SAMPLE_INTERVAL_S", "ENV_SCOPE", "ENV_VARS", "MAX_PUE", "MAX_SAMPLE_INTERVAL_S", "SCOPES",
    "GreenConfig",
]


@dataclass(frozen=True)
class GreenConfig:
    """The validated settings of a tracker, with the carbon intensity resolved.

    Build it with :meth:`resolve` to read the environment; the constructor validates too.

    Attributes:
        region: The canonical region code, or None when none was configured (the world
            average is used and ``carbon.region`` is ``"WORLD"``).
        pue: Power usage effectiveness applied to emissions (>= 1.0).
        meters: Meter names in priority order, or None for automatic selection.
        sample_interval_s: Seconds between power samples (devices without a counter only).
        intensity_provider: Name of the live carbon-intensity provider, or None (offline).
        scope: ``process`` (bill this process tree's GPUs and share of CPU and RAM) or
            ``machine`` (whole devices).
        sources: Field -> where its value came from: ``"argument"``,
            ``"env MLFLOW_GREEN_..."`` or ``"default"``.
        carbon: The carbon intensity in force (resolved at construction when not given).

    Example:
        >>> cfg = GreenConfig(region="DEU", pue=1.4)
        >>> cfg.carbon.region_name, cfg.sources["pue"], cfg.sources["meters"]
        ('Germany', 'argument', 'default')
    """

    region: str | None = None
    pue: float = DEFAULT_PUE
    meters: tuple[str, ...] | None = None
    sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S
    intensity_provider: str | None = None
    scope: str = DEFAULT_SCOPE
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    carbon: CarbonIntensity = field(default=None)  # type: ignore[assignment]  # set in __post_init__

    def __post_init__(self) -> None:
        if not isinstance(self.sources, Mapping):
            raise ConfigError(f"sources must be a mapping of field -> origin, got {self.sources!r}")
        sources = {
            name: str(self.sources.get(name) or implicit_source(getattr(self, name), default))
            for name, default in DEFAULTS.items()
        }
        set_ = object.__setattr__
        set_(self, "sources", MappingProxyType(sources))
        set_(self, "pue", check_pue(self.pue, sources))
        set_(self, "sample_interval_s", check_interval(self.sample_interval_s, sources))
        set_(self, "scope", check_scope(self.scope, sources))
        if self.meters is not None:
            set_(self, "meters", check_meters(self.meters, sources))
        if self.intensity_provider is not None:
            set_(self, "intensity_provider", check_provider(self.intensity_provider, sources))
        if self.region is not None and (not isinstance(self.region, str) or not self.region.strip()):
            raise ConfigError(
                f"Invalid region={self.region!r} (from {origin_of(sources, 'region')}): expected a region code "
                f"such as 'FRA', 'FR', 'US-CA' or 'WORLD' (or no region: the world average)."
            )
        carbon = self._carbon(sources)
        set_(self, "carbon", carbon)
        if self.region is not None:
            set_(self, "region", carbon.region)

    def _carbon(self, sources: Mapping[str, str]) -> CarbonIntensity:
        """The given carbon intensity if it matches the region, else a freshly resolved one."""
        carbon: object = self.carbon
        if carbon is not None and not isinstance(carbon, CarbonIntensity):
            raise ConfigError(f"carbon must be a CarbonIntensity or None, got {type(carbon).__name__}")
        expected = self.region if self.region is not None else WORLD
        stale = self.region is None and self.intensity_provider is not None
        if isinstance(carbon, CarbonIntensity) and carbon.region == expected and not stale:
            return carbon
        try:
            return resolve_intensity(self.region, self.intensity_provider)
        except UnknownRegionError as exc:
            raise UnknownRegionError(f"Invalid region (from {origin_of(sources, 'region')}): {exc}") from None

    @classmethod
    def resolve(
        cls,
        *,
        region: str | None = None,
        pue: float | None = None,
        meters: str | Sequence[str] | None = None,
        sample_interval_s: float | None = None,
        intensity_provider: str | None = None,
        scope: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> GreenConfig:
        """Build a config from arguments, then ``MLFLOW_GREEN_*`` variables, then defaults.

        Args:
            region: Carbon-intensity region (see :func:`mlflow_green.carbon.offline_intensity`).
            pue: Power usage effectiveness, a number >= 1.0.
            meters: Meter names in priority order, as a list or a comma-separated string.
            sample_interval_s: Seconds between power samples, in (0, 60].
            intensity_provider: Name of a registered live carbon-intensity provider.
            scope: ``process`` (default) or ``machine``.
            environ: The environment to read (default ``os.environ``).

        Raises:
            ConfigError: A value is invalid; the message names the argument or variable.
            UnknownRegionError: The region is unknown (close matches are suggested).
            UnknownMeterError: A meter name is not registered.

        Example:
            >>> GreenConfig.resolve(environ={"MLFLOW_GREEN_PUE": "1.3"}).sources["pue"]
            'env MLFLOW_GREEN_PUE'
        """
        env = os.environ if environ is None else environ
        arguments: dict[str, Any] = {
            "region": region,
            "pue": pue,
            "meters": meters,
            "sample_interval_s": sample_interval_s,
            "intensity_provider": intensity_provider,
            "scope": scope,
        }
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name, value in arguments.items():
            raw = env.get(ENV_VARS[name], "")
            if value is not None:
                values[name], sources[name] = value, FROM_ARGUMENT
            elif raw.strip():
                values[name], sources[name] = raw.strip(), f"env {ENV_VARS[name]}"
            else:
                sources[name] = FROM_DEFAULT
        if sources["pue"] != FROM_ARGUMENT and "pue" in values:
            values["pue"] = parse_env_number(values["pue"], ENV_PUE, PUE_RULE, pue_ok)
        if sources["sample_interval_s"] != FROM_ARGUMENT and "sample_interval_s" in values:
            values["sample_interval_s"] = parse_env_number(
                values["sample_interval_s"], ENV_SAMPLE_INTERVAL_S, INTERVAL_RULE, interval_ok
            )
        config = cls(**values, sources=MappingProxyType(sources))
        logger.debug("mlflow-green config: %s", config.describe())
        return config

    def describe(self) -> dict[str, Any]:
        """A JSON-ready view for ``mlflow-green doctor`` and ``green/report.json``.

        Example:
            >>> GreenConfig.resolve(environ={}).describe()["region"]
            'WORLD'
        """
        return {
            "region": self.carbon.region,
            "region_name": self.carbon.region_name,
            "intensity_g_per_kwh": self.carbon.intensity_g_per_kwh,
            "intensity_source": self.carbon.source,
            "intensity_method": self.carbon.method,
            "pue": self.pue,
            "meters": list(self.meters) if self.meters is not None else None,
            "sample_interval_s": self.sample_interval_s,
            "intensity_provider": self.intensity_provider,
            "scope": self.scope,
            "sources": dict(self.sources),
        }

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (ddp_spawn, ``copy.deepcopy``): ``sources`` travels as a plain dict."""
        state = dict(self.__dict__)
        state["sources"] = dict(self.sources)
        return state

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, MappingProxyType(dict(value)) if name == "sources" else value)

    def replace(self, **changes: Any) -> GreenConfig:
        """A copy with some fields changed, validated again; changed fields count as arguments.

        Example:
            >>> GreenConfig(region="FRA").replace(region="DEU").carbon.region
            'DEU'
        """
        sources = dict(self.sources)
        sources.update({name: FROM_ARGUMENT for name in changes if name in sources})
        return dataclasses.replace(self, **changes, sources=MappingProxyType(sources))
