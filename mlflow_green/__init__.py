"""mlflow-green: energy and carbon accounting for deep learning, inside MLflow.

Importing this package is cheap: it imports no deep-learning framework, no NVML binding and
not CodeCarbon; public names are loaded on first use.

Example::

    import mlflow_green
    with mlflow_green.track() as t:
        train()

    mlflow_green.autolog()          # or: every Keras, Lightning and Hugging Face training from now on
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow_green.autologging import autolog
    from mlflow_green.carbon import CarbonIntensity
    from mlflow_green.config import GreenConfig
    from mlflow_green.errors import ConfigError, GreenError, InferenceError, MeterError
    from mlflow_green.inference import InferenceReport, InferenceResult, measure_inference
    from mlflow_green.measure.readings import DeviceEnergy, Measurement
    from mlflow_green.measure.tracker import EnergyTracker
    from mlflow_green.ranking import Compression, RankedRow, Ranking, rank
    from mlflow_green.training.tracked_run import TrackedRun, track

_LAZY = {
    "__version__": "mlflow_green._version",
    "autolog": "mlflow_green.autologging",
    "EnergyTracker": "mlflow_green.measure.tracker",
    "track": "mlflow_green.training.tracked_run",
    "TrackedRun": "mlflow_green.training.tracked_run",
    "Measurement": "mlflow_green.measure.readings",
    "DeviceEnergy": "mlflow_green.measure.readings",
    "GreenConfig": "mlflow_green.config",
    "CarbonIntensity": "mlflow_green.carbon",
    "rank": "mlflow_green.ranking",
    "Ranking": "mlflow_green.ranking",
    "RankedRow": "mlflow_green.ranking",
    "Compression": "mlflow_green.ranking",
    "GreenError": "mlflow_green.errors",
    "ConfigError": "mlflow_green.errors",
    "MeterError": "mlflow_green.errors",
    "InferenceError": "mlflow_green.errors",
    "measure_inference": "mlflow_green.inference",
    "InferenceReport": "mlflow_green.inference",
    "InferenceResult": "mlflow_green.inference",
    "PolicyError": "mlflow_green.errors",
    "GateResult": "mlflow_green.gates",
    "Policy": "mlflow_green.gates",
    "load_policy": "mlflow_green.gates",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlflow_green' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
