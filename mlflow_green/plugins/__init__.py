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

- :mod:`~mlflow_green.plugins.hookspecs`: the hooks (imports nothing of mlflow_green).
- :mod:`~mlflow_green.plugins.manager`: the manager and the collected factories.
- :mod:`~mlflow_green.plugins.builtin`: the built-in meters and model inspectors.

Example:
    >>> from mlflow_green.plugins import meter_factories
    >>> "estimate" in meter_factories()
    True
"""

from __future__ import annotations

import importlib
from typing import Any

from mlflow_green.plugins.hookspecs import ENTRY_POINT_GROUP, PROJECT_NAME, GreenHookSpecs, hookimpl, hookspec

# The manager imports the built-in meters, which import the hook markers above: load it on first use.
_MANAGER_NAMES = ("collect", "get_plugin_manager", "inspector_factories", "intensity_provider_factories", "meter_factories")

__all__ = ["ENTRY_POINT_GROUP", "PROJECT_NAME", "GreenHookSpecs", "hookimpl", "hookspec", *_MANAGER_NAMES]


def __getattr__(name: str) -> Any:
    if name in _MANAGER_NAMES:
        return getattr(importlib.import_module("mlflow_green.plugins.manager"), name)
    raise AttributeError(f"module 'mlflow_green.plugins' has no attribute {name!r}")
