"""The settings' names, defaults and checks: one check per field, each error naming its source.

:class:`~mlflow_green.config.GreenConfig` runs these at construction. A source is ``"argument"``,
``"env MLFLOW_GREEN_..."`` or ``"default"``; :func:`origin_of` says it in words for error messages.

Example:
    >>> check_pue(1.2, {"pue": "argument"}), check_scope(" Machine ", {})
    (1.2, 'machine')
    >>> try:
    ...     check_pue(0.5, {"pue": "env MLFLOW_GREEN_PUE"})
    ... except ConfigError as err:
    ...     print(str(err)[:60])
    Invalid pue=0.5 (from environment variable MLFLOW_GREEN_PUE)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from mlflow_green.carbon import ENV_REGION
from mlflow_green.errors import ConfigError, UnknownMeterError

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

FROM_ARGUMENT = "argument"
FROM_DEFAULT = "default"

PUE_RULE = (
    "PUE (power usage effectiveness) must be a number from 1.0 to 10: 1.0 means no facility "
    "overhead, typical data centres are 1.1-1.6"
)
INTERVAL_RULE = (
    f"the sample interval must be a finite number of seconds > 0 and <= {MAX_SAMPLE_INTERVAL_S:g} "
    f"(default {DEFAULT_SAMPLE_INTERVAL_S:g}); it only paces power sampling of devices without an energy counter"
)


def origin_of(sources: Mapping[str, str], name: str) -> str:
    """Where a field's value came from, in words, for error messages."""
    source = sources.get(name, FROM_ARGUMENT)
    if source.startswith("env "):
        return f"environment variable {source[4:]}"
    if source == FROM_ARGUMENT:
        return f"argument {name}="
    return source


DEFAULTS: Mapping[str, object] = MappingProxyType(
    {
        "region": None,
        "pue": DEFAULT_PUE,
        "meters": None,
        "sample_interval_s": DEFAULT_SAMPLE_INTERVAL_S,
        "intensity_provider": None,
        "scope": DEFAULT_SCOPE,
    }
)


def implicit_source(value: object, default: object) -> str:
    """The source of a field not listed in ``sources``: ``default`` if it has the default value."""
    if value is None or default is None:
        same = value is default
    else:
        same = type(value) in (int, float) and value == default
    return FROM_DEFAULT if same else FROM_ARGUMENT


def real_number(value: object, name: str, sources: Mapping[str, str], rule: str) -> float:
    """A real number (int, float, numpy scalar), never a bool or a string."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(
            f"Invalid {name}={value!r} (from {origin_of(sources, name)}): expected a number, got "
            f"{type(value).__name__}; {rule}."
        )
    try:
        return float(value)
    except (OverflowError, ValueError, TypeError):
        raise ConfigError(f"Invalid {name}={value!r} (from {origin_of(sources, name)}): {rule}.") from None


MAX_PUE = 10.0
"""Far above any real facility (the worst on record are about 3): larger is a typo."""


def pue_ok(pue: float) -> bool:
    return math.isfinite(pue) and 1.0 <= pue <= MAX_PUE


def interval_ok(interval_s: float) -> bool:
    return math.isfinite(interval_s) and 0.0 < interval_s <= MAX_SAMPLE_INTERVAL_S


def check_pue(value: object, sources: Mapping[str, str]) -> float:
    pue = real_number(value, "pue", sources, PUE_RULE)
    if not pue_ok(pue):
        raise ConfigError(f"Invalid pue={value!r} (from {origin_of(sources, 'pue')}): {PUE_RULE}.")
    return pue


def check_interval(value: object, sources: Mapping[str, str]) -> float:
    interval_s = real_number(value, "sample_interval_s", sources, INTERVAL_RULE)
    if not interval_ok(interval_s):
        raise ConfigError(
            f"Invalid sample_interval_s={value!r} (from {origin_of(sources, 'sample_interval_s')}): {INTERVAL_RULE}."
        )
    return interval_s


def split_meters(value: object, sources: Mapping[str, str]) -> tuple[str, ...]:
    """A comma-separated string or a sequence of names -> a tuple of stripped names."""
    if isinstance(value, str):
        names: list[object] = list(value.split(","))
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        names = list(value)
    else:
        raise ConfigError(
            f"Invalid meters={value!r} (from {origin_of(sources, 'meters')}): expected meter names as a "
            f"comma-separated string ('nvml,rapl') or a list of strings, got {type(value).__name__}."
        )
    cleaned: list[str] = []
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"Invalid meters={value!r} (from {origin_of(sources, 'meters')}): every meter name must be "
                f"a non-empty string, got {name!r}."
            )
        cleaned.append(name.strip())
    if not cleaned:
        raise ConfigError(
            f"Invalid meters={value!r} (from {origin_of(sources, 'meters')}): name at least one meter, "
            f"or leave it unset for automatic selection."
        )
    return tuple(cleaned)


def check_meters(value: object, sources: Mapping[str, str]) -> tuple[str, ...]:
    import difflib

    from mlflow_green.plugins import meter_factories

    names = split_meters(value, sources)
    origin = origin_of(sources, "meters")
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


def check_scope(value: object, sources: Mapping[str, str]) -> str:
    scope = value.strip().lower() if isinstance(value, str) else value
    if scope not in SCOPES:
        raise ConfigError(
            f"Invalid scope={value!r} (from {origin_of(sources, 'scope')}): expected 'process' (bill what this "
            f"training used: the GPUs its processes hold, its share of CPU and RAM; the default) or 'machine' "
            f"(whole devices, for a dedicated host)."
        )
    return str(scope)


def check_provider(value: object, sources: Mapping[str, str]) -> str:
    from mlflow_green.plugins import intensity_provider_factories

    origin = origin_of(sources, "intensity_provider")
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
