"""The plugin system: pluggy hooks for meters, carbon-intensity providers and model inspectors.

Built-in meters are registered through the same ``register_meters`` hook as third-party ones.
A third-party package exposes a module with ``@hookimpl`` functions under the entry-point
group ``mlflow_green``::

    # pyproject.toml of your plugin
    [project.entry-points.mlflow_green]
    my_meter = "my_package.green_plugin"

    # my_package/green_plugin.py
    from mlflow_green.plugins import hookimpl

    @hookimpl
    def register_meters(register):
        register(MyMeter)           # a Meter subclass or any zero-argument factory

Example:
    >>> from mlflow_green.plugins import meter_factories
    >>> sorted(meter_factories())[:2]
    ['codecarbon', 'estimate']
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from mlflow_green.carbon import IntensityProvider
    from mlflow_green.meters.base import Meter

PROJECT_NAME = "mlflow_green"
ENTRY_POINT_GROUP = "mlflow_green"

logger = logging.getLogger(__name__)

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

MeterFactory = Callable[[], "Meter"]
ProviderFactory = Callable[[], "IntensityProvider"]


class GreenHookSpecs:
    """The hooks a plugin may implement."""

    @hookspec
    def register_meters(self, register: Callable[[MeterFactory], None]) -> None:
        """Register energy meters: call ``register(factory)`` once per meter.

        ``factory`` is a :class:`~mlflow_green.meters.base.Meter` subclass or any callable
        returning a fresh, unopened meter. A meter whose ``name`` equals a built-in's
        replaces the built-in.
        """

    @hookspec
    def register_intensity_providers(self, register: Callable[[ProviderFactory], None]) -> None:
        """Register live carbon-intensity providers: call ``register(factory)`` once each.

        Providers are used only when the user names one (``intensity_provider=`` or
        ``MLFLOW_GREEN_INTENSITY_PROVIDER``); mlflow-green never goes online by itself.
        """

    @hookspec
    def register_model_inspectors(self, register: Callable[[Callable[[], Any]], None]) -> None:
        """Register model inspectors (framework-specific compression metadata readers)."""


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager: built-ins first, then entry-point plugins."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(GreenHookSpecs)
    from mlflow_green import builtin_plugin

    pm.register(builtin_plugin, name="mlflow_green.builtin")
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


def _collect(hook_name: str) -> dict[str, Callable[[], Any]]:
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
    return _collect("register_meters")


def intensity_provider_factories() -> dict[str, ProviderFactory]:
    """Every registered live carbon-intensity provider factory by name."""
    return _collect("register_intensity_providers")
