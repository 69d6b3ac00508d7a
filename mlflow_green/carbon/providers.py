"""Resolving the carbon intensity in force: a named live provider, else the offline table.

mlflow-green never goes online by itself: a provider is used only when the user names one,
and a provider that fails falls back to the offline table, saying so in the source.

Example:
    >>> resolve_intensity("DE").region
    'DEU'
"""

from __future__ import annotations

import logging

from mlflow_green.carbon.intensity import CarbonIntensity
from mlflow_green.carbon.offline import offline_intensity
from mlflow_green.errors import ConfigError, UnknownRegionError

logger = logging.getLogger(__name__)


def resolve_intensity(region: str | None, provider: str | None = None) -> CarbonIntensity:
    """The carbon intensity to use: offline, unless a live provider is named.

    A provider that fails (raises, or returns something that is not a
    :class:`CarbonIntensity`) is replaced by the offline value, with a warning, and the
    returned ``source`` starts with ``"offline fallback: <reason>"``.

    Args:
        region: As for :func:`offline_intensity`; providers receive the canonical code when
            the offline table knows the region, otherwise the stripped string.
        provider: Name of a provider registered through ``register_intensity_providers``.

    Raises:
        ConfigError: ``provider`` is not registered (the message lists the registered ones).
        UnknownRegionError: Offline (or after a fallback) and the region is unknown.

    Example:
        >>> resolve_intensity("DE").region
        'DEU'
    """
    if provider is None:
        return offline_intensity(region)
    from mlflow_green.plugins.manager import intensity_provider_factories  # lazy: plugins load on demand

    factories = intensity_provider_factories()
    if provider not in factories:
        registered = ", ".join(sorted(factories)) or "none (install a plugin that provides one)"
        raise ConfigError(
            f"Unknown carbon-intensity provider {provider!r}. Registered providers: {registered}. "
            f"Leave it unset to use the offline table."
        )
    query = region.strip() if isinstance(region, str) and region.strip() else None
    if query is not None:
        try:
            query = offline_intensity(query).region
        except UnknownRegionError:
            pass  # the provider may know zones the offline table does not
    try:
        result = factories[provider]().intensity(query)
        if not isinstance(result, CarbonIntensity):
            raise TypeError(f"returned {type(result).__name__}, not CarbonIntensity")
        return result
    except Exception as exc:  # a plugin must never break training
        reason = f"provider {provider!r} failed ({type(exc).__name__}: {exc})"
        if len(reason) > 300:
            reason = reason[:297] + "..."
        logger.warning("Carbon-intensity %s; using the offline table instead", reason)
        offline = offline_intensity(region)
        return CarbonIntensity(
            offline.region,
            offline.region_name,
            offline.intensity_g_per_kwh,
            f"offline fallback: {reason}; {offline.source}",
        )
