"""Register factories on any ``register_*`` hook for a ``with`` block, as a third-party plugin would."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator
from typing import Any

from mlflow_green.plugins import get_plugin_manager, hookimpl


@contextlib.contextmanager
def registered_plugin(hook_name: str, *factories: Callable[[], Any]) -> Iterator[Any]:
    """Register ``factories`` through the hook ``hook_name`` until the block exits.

    Example:
        >>> from mlflow_green.plugins import meter_factories
        >>> from mlflow_green.testing import FakeMeter
        >>> with registered_plugin("register_meters", lambda: FakeMeter({"cpu:0": 1.0}, name="x")):
        ...     "x" in meter_factories()
        True
    """

    def register_all(register: Callable[[Callable[[], Any]], None]) -> None:
        for factory in factories:
            register(factory)

    plugin = types.SimpleNamespace(**{hook_name: hookimpl(register_all)})
    pm = get_plugin_manager()
    pm.register(plugin)
    try:
        yield plugin
    finally:
        pm.unregister(plugin)
