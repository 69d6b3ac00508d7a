"""The hook specifications: what a plugin may implement. Imports nothing of mlflow_green.

Meters, carbon-intensity providers and model inspectors all register through these hooks,
built-ins included. The types the hooks name are imported for type checking only, so this
module sits below every module that implements a hook.

Example:
    >>> from mlflow_green.plugins.hookspecs import hookimpl
    >>> @hookimpl
    ... def register_meters(register):
    ...     pass
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from mlflow_green.carbon.intensity import IntensityProvider
    from mlflow_green.measure.meters.base import Meter

PROJECT_NAME = "mlflow_green"
ENTRY_POINT_GROUP = "mlflow_green"

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
