"""An inference report as MLflow metrics, tags and ``green/inference_report.json`` (pure, no I/O).

Each batch size's figures are logged with ``step`` = batch size, so the metric history is the
sweep and the latest value (MLflow's: the highest step) is the largest batch size's, the headline.

Example:
    >>> from mlflow_green.inference.result import InferenceReport, InferenceResult
    >>> from mlflow_green.measure.readings import DeviceEnergy, Measurement
    >>> cpu = DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 36.0, 2.0)
    >>> report = InferenceReport((InferenceResult(8, 3600, 450, 2.0, Measurement(2.0, (cpu,)), 4.0, 5.0),))
    >>> [(step, m["green/inference_energy_per_prediction_j"]) for step, m in sweep_metrics(report)]
    [(8, 0.01)]
"""

from __future__ import annotations

import math
from typing import Any

from mlflow_green._version import __version__
from mlflow_green.inference.result import InferenceReport, InferenceResult
from mlflow_green.record import schema
from mlflow_green.units import joules_to_kwh, now_iso_utc, unix_s_to_iso_utc

REPORT_KIND = "inference"
EXCLUDED = (
    "loading the model",
    "cutting and converting the data into batches",
    "warm-up calls before each window",
    "time between windows",
)
"""What the figures leave out, as written into the report."""


def result_metrics(result: InferenceResult) -> dict[str, float]:
    """The ``green/inference_*`` metrics of one batch size (non-finite values left out)."""
    values = {
        schema.INFERENCE_ENERGY_PER_PREDICTION_J: result.energy_per_prediction_j,
        schema.INFERENCE_POWER_W: result.power_w,
        schema.INFERENCE_LATENCY_MS: result.latency_p50_ms,
        schema.INFERENCE_LATENCY_P95_MS: result.latency_p95_ms,
        schema.INFERENCE_THROUGHPUT_PER_S: result.throughput_per_s,
        schema.INFERENCE_ENERGY_KWH: joules_to_kwh(result.energy_j),
    }
    return {key: float(value) for key, value in values.items() if math.isfinite(value)}


def sweep_metrics(report: InferenceReport) -> list[tuple[int, dict[str, float]]]:
    """``(step, metrics)`` per batch size, smallest batch size first (the headline last)."""
    return [(r.batch_size, result_metrics(r)) for r in sorted(report.results, key=lambda r: r.batch_size)]


def inference_tags(report: InferenceReport, *, model_run_id: str | None = None) -> dict[str, str]:
    """Tags every evaluation run gets: how its inference figures were measured, and of which model."""
    tags = {
        schema.TAG_INFERENCE_METERS: report.meters,
        schema.TAG_INFERENCE_SCOPE: report.scope,
        schema.TAG_INFERENCE_ESTIMATED: "true" if report.estimated else "false",
        schema.TAG_INFERENCE_BATCH_SIZE: str(report.headline.batch_size),
    }
    if model_run_id:
        tags[schema.TAG_INFERENCE_MODEL_RUN] = model_run_id
    return tags


def run_level_tags(report: InferenceReport, *, cpu: str, gpu: str | None) -> dict[str, str]:
    """The general ``green.*`` tags, for an evaluation run that has none (not a training run)."""
    config = report.config
    tags = {
        schema.TAG_VERSION: __version__,
        schema.TAG_METERS: report.meters,
        schema.TAG_SCOPE: report.scope,
        schema.TAG_ESTIMATED: "true" if report.estimated else "false",
        schema.TAG_HARDWARE_CPU: cpu,
    }
    if config.get("region"):
        tags[schema.TAG_REGION] = str(config["region"])
    if config.get("intensity_source"):
        tags[schema.TAG_INTENSITY_SOURCE] = str(config["intensity_source"])
    if config.get("pue") is not None:
        tags[schema.TAG_PUE] = f"{float(config['pue']):g}"
    if gpu:
        tags[schema.TAG_HARDWARE_GPU] = gpu
    return tags


def report_document(report: InferenceReport, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body of ``green/inference_report.json``: the report with its schema version and exclusions."""
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "kind": REPORT_KIND,
        "mlflow_green_version": __version__,
        "created_at": now_iso_utc(),
        "started_at": unix_s_to_iso_utc(report.started_at_unix_s),
        "excluded": list(EXCLUDED),
        **report.to_dict(),
        **dict(extra or {}),
    }
