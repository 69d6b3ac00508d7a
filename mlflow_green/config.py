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
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mlflow_green.carbon import ENV_REGION, WORLD, CarbonIntensity, resolve_intensity
from mlflow_green.errors import ConfigError, UnknownMeterError, UnknownRegionError

logger = logging.getLogger(__name__)

ENV_PUE = "MLFLOW_GREEN_PUE"
ENV_METERS = "MLFLOW_GREEN_METERS"
ENV_SAMPLE_INTERVAL_S = "MLFLOW_GREEN_SAMPLE_INTERVAL_S"
ENV_INTENSITY_PROVIDER = "MLFLOW_GREEN_INTENSITY_PROVIDER"
ENV_SCOPE = "MLFLOW_GREEN_SCOPE"

ENV_VARS: Mapping[str, str] = MappingProxyType(
    {
        "region": ENV_REGION,
        "pue": ENV_PUE,
        "meters": ENV_METERS,
        "sample_interval_s": ENV_SAMPLE_INTERVAL_S,
        "intensity_provider": ENV_INTENSITY_PROVIDER,
        "scope": ENV_SCOPE,
    }
)
"""Config field -> the environment variable that sets it."""

DEFAULT_PUE = 1.0
DEFAULT_SAMPLE_INTERVAL_S = 0.1
MAX_SAMPLE_INTERVAL_S = 60.0
DEFAULT_SCOPE = "process"
SCOPES = ("process", "machine")

_FROM_ARGUMENT = "argument"
_FROM_DEFAULT = "default"

_PUE_RULE = (
    "PUE (power usage effectiveness) must be a number from 1.0 to 10: 1.0 means no facility "
    "overhead, typical data centres are 1.1-1.6"
)
_INTERVAL_RULE = (
    f"the sample interval must be a finite number of seconds > 0 and <= {MAX_SAMPLE_INTERVAL_S:g} "
    f"(default {DEFAULT_SAMPLE_INTERVAL_S:g}); it only paces power sampling of devices without an energy counter"
)


def _origin(sources: Mapping[str, str], name: str) -> str:
    """Where a field's value came from, in words, for error messages."""
    source = sources.get(name, _FROM_ARGUMENT)
    if source.startswith("env "):
        return f"environment variable {source[4:]}"
    if source == _FROM_ARGUMENT:
        return f"argument {name}="
    return source


_DEFAULTS: Mapping[str, object] = MappingProxyType(
    {
        "region": None,
        "pue": DEFAULT_PUE,
        "meters": None,
        "sample_interval_s": DEFAULT_SAMPLE_INTERVAL_S,
        "intensity_provider": None,
        "scope": DEFAULT_SCOPE,
    }
)


def _implicit_source(value: object, default: object) -> str:
    """The source of a field not listed in ``sources``: ``default`` if it has the default value."""
    if value is None or default is None:
        same = value is default
    else:
        same = type(value) in (int, float) and value == default
    return _FROM_DEFAULT if same else _FROM_ARGUMENT


def _number(value: object, name: str, sources: Mapping[str, str], rule: str) -> float:
    """A real number (int, float, numpy scalar), never a bool or a string."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(
            f"Invalid {name}={value!r} (from {_origin(sources, name)}): expected a number, got "
            f"{type(value).__name__}; {rule}."
        )
    try:
        return float(value)
    except (OverflowError, ValueError, TypeError):
        raise ConfigError(f"Invalid {name}={value!r} (from {_origin(sources, name)}): {rule}.") from None


MAX_PUE = 10.0
"""Far above any real facility (the worst on record are about 3): larger is a typo."""


def _pue_ok(pue: float) -> bool:
    return math.isfinite(pue) and 1.0 <= pue <= MAX_PUE


def _interval_ok(interval_s: float) -> bool:
    return math.isfinite(interval_s) and 0.0 < interval_s <= MAX_SAMPLE_INTERVAL_S


def _parse_env_number(raw: str, var: str, rule: str, valid: Callable[[float], bool]) -> float:
    """Parse a number from an environment variable; errors quote the variable and its text."""
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"Environment variable {var}={raw!r} is not a number; {rule}.") from None
    if not valid(value):
        raise ConfigError(f"Environment variable {var}={raw!r} is out of range; {rule}.")
    return value


def _check_pue(value: object, sources: Mapping[str, str]) -> float:
    pue = _number(value, "pue", sources, _PUE_RULE)
    if not _pue_ok(pue):
        raise ConfigError(f"Invalid pue={value!r} (from {_origin(sources, 'pue')}): {_PUE_RULE}.")
    return pue


def _check_interval(value: object, sources: Mapping[str, str]) -> float:
    interval_s = _number(value, "sample_interval_s", sources, _INTERVAL_RULE)
    if not _interval_ok(interval_s):
        raise ConfigError(
            f"Invalid sample_interval_s={value!r} (from {_origin(sources, 'sample_interval_s')}): {_INTERVAL_RULE}."
        )
    return interval_s


def _split_meters(value: object, sources: Mapping[str, str]) -> tuple[str, ...]:
    """A comma-separated string or a sequence of names -> a tuple of stripped names."""
    if isinstance(value, str):
        names: list[object] = list(value.split(","))
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        names = list(value)
    else:
        raise ConfigError(
            f"Invalid meters={value!r} (from {_origin(sources, 'meters')}): expected meter names as a "
            f"comma-separated string ('nvml,rapl') or a list of strings, got {type(value).__name__}."
        )
    cleaned: list[str] = []
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"Invalid meters={value!r} (from {_origin(sources, 'meters')}): every meter name must be "
                f"a non-empty string, got {name!r}."
            )
        cleaned.append(name.strip())
    if not cleaned:
        raise ConfigError(
            f"Invalid meters={value!r} (from {_origin(sources, 'meters')}): name at least one meter, "
            f"or leave it unset for automatic selection."
        )
    return tuple(cleaned)


def _check_meters(value: object, sources: Mapping[str, str]) -> tuple[str, ...]:
    import difflib

    from mlflow_green.plugins import meter_factories

    names = _split_meters(value, sources)
    origin = _origin(sources, "meters")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"Invalid meters={value!r} (from {origin}): {', '.join(duplicates)} listed twice.")
    registered = sorted(meter_factories())
    for name in names:
        if name not in registered:
            close = difflib.get_close_matches(name, registered, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownMeterError(
                f"Unknown meter {name!r} in meters={value!r} (from {origin}).{hint} Registered meters: "
                f"{', '.join(registered) or 'none'}. Run `mlflow-green doctor` to see which work here."
            )
    return names


def _check_scope(value: object, sources: Mapping[str, str]) -> str:
    scope = value.strip().lower() if isinstance(value, str) else value
    if scope not in SCOPES:
        raise ConfigError(
            f"Invalid scope={value!r} (from {_origin(sources, 'scope')}): expected 'process' (bill what this "
            f"training used: the GPUs its processes hold, its share of CPU and RAM; the default) or 'machine' "
            f"(whole devices, for a dedicated host)."
        )
    return str(scope)


def _check_provider(value: object, sources: Mapping[str, str]) -> str:
    from mlflow_green.plugins import intensity_provider_factories

    origin = _origin(sources, "intensity_provider")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"Invalid intensity_provider={value!r} (from {origin}): expected a provider name, or leave it "
            f"unset to use the offline table."
        )
    name = value.strip()
    registered = sorted(intensity_provider_factories())
    if name not in registered:
        raise ConfigError(
            f"Unknown carbon-intensity provider {name!r} (from {origin}). Registered providers: "
            f"{', '.join(registered) or 'none (install a plugin that provides one)'}. Leave it unset to "
            f"use the offline table."
        )
    return name


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
            name: str(self.sources.get(name) or _implicit_source(getattr(self, name), default))
            for name, default in _DEFAULTS.items()
        }
        set_ = object.__setattr__
        set_(self, "sources", MappingProxyType(sources))
        set_(self, "pue", _check_pue(self.pue, sources))
        set_(self, "sample_interval_s", _check_interval(self.sample_interval_s, sources))
        set_(self, "scope", _check_scope(self.scope, sources))
        if self.meters is not None:
            set_(self, "meters", _check_meters(self.meters, sources))
        if self.intensity_provider is not None:
            set_(self, "intensity_provider", _check_provider(self.intensity_provider, sources))
        if self.region is not None and not isinstance(self.region, str):
            raise ConfigError(
                f"Invalid region={self.region!r} (from {_origin(sources, 'region')}): expected a string "
                f"such as 'FRA', 'FR', 'US-CA' or 'WORLD'."
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
            raise UnknownRegionError(f"Invalid region (from {_origin(sources, 'region')}): {exc}") from None

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
                values[name], sources[name] = value, _FROM_ARGUMENT
            elif raw.strip():
                values[name], sources[name] = raw.strip(), f"env {ENV_VARS[name]}"
            else:
                sources[name] = _FROM_DEFAULT
        if sources["pue"] != _FROM_ARGUMENT and "pue" in values:
            values["pue"] = _parse_env_number(values["pue"], ENV_PUE, _PUE_RULE, _pue_ok)
        if sources["sample_interval_s"] != _FROM_ARGUMENT and "sample_interval_s" in values:
            values["sample_interval_s"] = _parse_env_number(
                values["sample_interval_s"], ENV_SAMPLE_INTERVAL_S, _INTERVAL_RULE, _interval_ok
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
        sources.update({name: _FROM_ARGUMENT for name in changes if name in sources})
        return dataclasses.replace(self, **changes, sources=MappingProxyType(sources))
