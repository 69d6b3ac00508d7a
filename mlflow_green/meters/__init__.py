"""The documented path of the meters: ``mlflow_green.meters.<name>`` keeps working.

The modules live in :mod:`mlflow_green.measure.meters`; each is also importable under this
package (the same module object, not a copy, so classes compare equal either way).

Example:
    >>> from mlflow_green.meters.nvml import NvmlMeter
    >>> from mlflow_green.measure.meters.nvml import NvmlMeter as Same
    >>> NvmlMeter is Same
    True
"""

from __future__ import annotations

import sys

from mlflow_green.measure.meters import base, builtin, codecarbon_meter, estimate, nvml, rapl

for _module in (base, builtin, codecarbon_meter, estimate, nvml, rapl):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[-1]}"] = _module

__all__ = ["base", "builtin", "codecarbon_meter", "estimate", "nvml", "rapl"]
