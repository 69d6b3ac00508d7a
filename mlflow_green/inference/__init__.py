"""Inference energy: joules per prediction, for any model, with or without MLflow.

- :func:`measure_inference`: measure a model (Keras, torch, pyfunc, any callable) at several batch
  sizes, warm-up excluded; returns an :class:`InferenceReport` of frozen :class:`InferenceResult`.
- The ``green`` MLflow evaluator (:mod:`mlflow_green.inference.evaluator`, loaded by MLflow through
  the ``mlflow.model_evaluator`` entry point): ``mlflow.models.evaluate(model_uri, data,
  evaluators="green")`` logs the figures into the evaluation run and tags the registered version.

Nothing here imports MLflow or a deep-learning framework at import time.

Example::

    import mlflow_green
    report = mlflow_green.measure_inference(model, x_test, batch_sizes=(1, 32))
    for result in report:
        print(result.batch_size, result.energy_per_prediction_j, result.latency_p95_ms)
"""

from __future__ import annotations

from mlflow_green.inference.measure import counter_update_period_s, measure_inference, measure_with_options
from mlflow_green.inference.options import InferenceOptions
from mlflow_green.inference.result import InferenceReport, InferenceResult

__all__ = [
    "InferenceOptions",
    "InferenceReport",
    "InferenceResult",
    "counter_update_period_s",
    "measure_inference",
    "measure_with_options",
]
