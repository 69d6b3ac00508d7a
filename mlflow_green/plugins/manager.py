"""The plugin manager: built-ins first, then entry-point plugins; ``register_*`` hooks collected by name.

Example:
    >>> from mlflow_green.plugins import meter_factories
    >>> sorted(meter_factories())[:2]
    ['codecarbon', 'estimate']
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import pluggy

from mlflow_green.plugins import builtin  # the built-in meters and inspectors
from mlflow_green.plugins.hookspecs import (
    ENTRY_POINT_GROUP,
    PROJECT_NAME,
    GreenHookSpecs,
    MeterFactory,
    ProviderFactory,
)

logger = logging.getLogger(__name__)


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager: built-ins first, then entry-point plugins."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(GreenHookSpecs)
    pm.register(builtin, name="mlflow_green.builtin")
    _load_entry_points(pm)
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """Register third-party plugins (entry points discovered once, see :mod:`.entry_points`)."""
    from mlflow_green.plugins import entry_points

    for name, value in entry_points.entry_points(ENTRY_POINT_GROUP):
        if pm.is_blocked(name) or pm.get_plugin(name) is not None:
            continue
        try:
            pm.register(entry_points.load(value), name=name)
        except Exception as exc:  # a broken plugin is skipped, it never breaks measurement
            logger.warning("mlflow-green: plugin %r (%s) could not be loaded: %s", name, value, exc)


def collect(hook_name: str) -> dict[str, Callable[[], Any]]:
    """Call one ``register_*`` hook; return name -> factory, third-party overriding built-ins."""
    pm = get_plugin_manager()
    builtin = pm.get_plugin("mlflow_green.builtin")
    found: dict[str, tuple[bool, Callable[[], Any]]] = {}
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        is_builtin = impl.plugin is builtin
        registered: list[Callable[[], Any]] = []
        try:
            impl.function(register=registered.append)
        except Exception as exc:  # a broken plugin is skipped, it never breaks measurement
            logger.warning("mlflow-green: plugin %r failed in %s: %s", impl.plugin_name, hook_name, exc)
            continue
        for factory in registered:
            try:
                name = getattr(factory, "name", "") or getattr(factory(), "name", "")
            except Exception as exc:
                logger.warning("mlflow-green: plugin %r: factory %r failed: %s", impl.plugin_name, factory, exc)
                continue
            if not name or not isinstance(name, str):
                logger.warning("mlflow-green: plugin %r registered %r without a name", impl.plugin_name, factory)
                continue
            if name in found and not found[name][0] and is_builtin:
                continue  # a third-party plugin already replaced this built-in
            found[name] = (is_builtin, factory)
    return {name: factory for name, (_, factory) in found.items()}


def meter_factories() -> dict[str, MeterFactory]:
    """Every registered meter factory by meter name."""
    return collect("register_meters")


def intensity_provider_factories() -> dict[str, ProviderFactory]:
    """Every registered live carbon-intensity provider factory by name."""
    return collect("register_intensity_providers")


def inspector_factories() -> dict[str, Callable[[], Any]]:
    """Every registered model-inspector factory by name."""
    return collect("register_model_inspectors")
