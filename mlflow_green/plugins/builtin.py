"""The built-in plugin: meters and model inspectors, registered through the same hooks as
third-party plugins.

The model inspectors are lazy: Keras or torch is imported only when a model of that framework
is inspected, so ``import mlflow_green`` stays light.

Example:
    >>> names = []
    >>> register_model_inspectors(register=lambda factory: names.append(factory().name))
    >>> names
    ['keras', 'torch']
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from mlflow_green.measure.meters.builtin import register_meters
from mlflow_green.plugins.hookspecs import hookimpl
from mlflow_green.training.inspection import LazyInspector, ModelInspector

__all__ = ["register_meters", "register_model_inspectors"]

BUILTIN_INSPECTORS: tuple[Callable[[], ModelInspector], ...] = (
    partial(LazyInspector, "keras", "mlflow_green.integrations.keras_inspector", "KerasInspector", ("keras",)),
    partial(LazyInspector, "torch", "mlflow_green.integrations.torch_inspector", "TorchInspector", ("torch",)),
)


@hookimpl
def register_model_inspectors(register: Callable[[Callable[[], ModelInspector]], None]) -> None:
    """Register the Keras and torch inspectors (imported on first use)."""
    for factory in BUILTIN_INSPECTORS:
        register(factory)
