"""The built-in meters, registered through the same ``register_meters`` hook as plugins.

Importing this module stays cheap: the meter modules import ``pynvml`` and ``codecarbon``
only inside their methods.

Example:
    >>> names = []
    >>> register_meters(register=lambda factory: names.append(factory.name))
    >>> names
    ['nvml', 'rapl', 'codecarbon', 'estimate']
"""

from __future__ import annotations

from collections.abc import Callable

from mlflow_green.measure.meters.base import Meter
from mlflow_green.measure.meters.codecarbon_meter import CodeCarbonMeter
from mlflow_green.measure.meters.estimate import EstimateMeter
from mlflow_green.measure.meters.nvml import NvmlMeter
from mlflow_green.measure.meters.rapl import RaplMeter
from mlflow_green.plugins.hookspecs import hookimpl

BUILTIN_METERS: tuple[type[Meter], ...] = (NvmlMeter, RaplMeter, CodeCarbonMeter, EstimateMeter)


@hookimpl
def register_meters(register: Callable[[Callable[[], Meter]], None]) -> None:
    """Register NVML, RAPL, CodeCarbon and the estimate (each constructible with no arguments)."""
    for meter_class in BUILTIN_METERS:
        register(meter_class)
