"""Every MLflow metric, tag and artifact name mlflow-green writes or reads. Nothing else spells a key.

Metrics live under the ``green/`` prefix (as MLflow uses ``system/``), tags under ``green.``
(as MLflow uses ``mlflow.``); units are in every name. Energy, emissions and duration are
running totals logged with ``step`` = epoch, so the latest value is the run's total.

Example:
    >>> ENERGY_KWH
    'green/energy_kwh'
    >>> component_energy_key("gpu")
    'green/energy_gpu_kwh'
"""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 1

METRIC_PREFIX: Final = "green/"
TAG_PREFIX: Final = "green."

# --- energy, power, emissions: running totals, step = epoch ---------------------------------
ENERGY_KWH: Final = "green/energy_kwh"
ENERGY_GPU_KWH: Final = "green/energy_gpu_kwh"
ENERGY_CPU_KWH: Final = "green/energy_cpu_kwh"
ENERGY_RAM_KWH: Final = "green/energy_ram_kwh"
EPOCH_ENERGY_KWH: Final = "green/epoch_energy_kwh"
POWER_W: Final = "green/power_w"
EMISSIONS_KG: Final = "green/emissions_kg"
CARBON_INTENSITY_G_PER_KWH: Final = "green/carbon_intensity_g_per_kwh"
DURATION_S: Final = "green/duration_s"
ENERGY_PER_SAMPLE_J: Final = "green/energy_per_sample_j"

# --- phase split -----------------------------------------------------------------------------
ENERGY_TRAIN_KWH: Final = "green/energy_train_kwh"
ENERGY_VALIDATION_KWH: Final = "green/energy_validation_kwh"
ENERGY_DATA_KWH: Final = "green/energy_data_kwh"
ENERGY_OTHER_KWH: Final = "green/energy_other_kwh"
"""Everything of a fit outside train, validation and data: setup before the first epoch, teardown
after the last, the gaps between epochs and the callback's own work; train + validation + data +
other = ``green/energy_kwh`` at every step."""
ENERGY_TEST_KWH: Final = "green/energy_test_kwh"
ENERGY_PREDICT_KWH: Final = "green/energy_predict_kwh"
ENERGY_VALIDATE_KWH: Final = "green/energy_validate_kwh"
"""Energy of ``trainer.validate`` calls outside a fit (a fit's own validation is ``green/energy_validation_kwh``)."""

# --- projections and efficiency --------------------------------------------------------------
PROJECTED_ENERGY_KWH: Final = "green/projected_energy_kwh"
PROJECTED_EMISSIONS_KG: Final = "green/projected_emissions_kg"
ACCURACY_PER_KWH: Final = "green/accuracy_per_kwh"
QUALITY: Final = "green/quality"
"""The value of the quality metric (named by ``green.quality_metric``) behind accuracy_per_kwh."""
FLOP_PER_J: Final = "green/flop_per_j"

# --- compression metadata --------------------------------------------------------------------
MODEL_PARAMS: Final = "green/model_params"
MODEL_PARAMS_UNIQUE: Final = "green/model_params_unique"
MODEL_PARAMS_NONZERO: Final = "green/model_params_nonzero"
MODEL_SPARSITY: Final = "green/model_sparsity"
MODEL_STRUCTURED_SPARSITY: Final = "green/model_structured_sparsity"
MODEL_WEIGHT_BITS: Final = "green/model_weight_bits"
MODEL_SIZE_BYTES: Final = "green/model_size_bytes"
MODEL_COMPRESSED_SIZE_BYTES: Final = "green/model_compressed_size_bytes"
MODEL_FLOPS_PER_SAMPLE: Final = "green/model_flops_per_sample"

# --- inference (evaluation runs): step = batch size, the largest batch size is the latest value ---
INFERENCE_ENERGY_PER_PREDICTION_J: Final = "green/inference_energy_per_prediction_j"
INFERENCE_POWER_W: Final = "green/inference_power_w"
INFERENCE_LATENCY_MS: Final = "green/inference_latency_ms"
"""Median time of one call (one batch), in milliseconds."""
INFERENCE_LATENCY_P95_MS: Final = "green/inference_latency_p95_ms"
INFERENCE_THROUGHPUT_PER_S: Final = "green/inference_throughput_per_s"
INFERENCE_ENERGY_KWH: Final = "green/inference_energy_kwh"
"""Energy of the measurement window at that batch size (all devices)."""

# --- run tags --------------------------------------------------------------------------------
TAG_VERSION: Final = "green.version"
TAG_METERS: Final = "green.meters"
TAG_SCOPE: Final = "green.scope"
"""Whose share each component is: ``gpu:process,cpu:process,ram:process`` (or ``machine``)."""
TAG_ESTIMATED: Final = "green.estimated"
TAG_REGION: Final = "green.region"
TAG_INTENSITY_SOURCE: Final = "green.intensity_source"
TAG_PUE: Final = "green.pue"
TAG_HARDWARE_CPU: Final = "green.hardware.cpu"
TAG_HARDWARE_GPU: Final = "green.hardware.gpu"
TAG_WORLD_SIZE: Final = "green.world_size"
TAG_HOSTS: Final = "green.hosts"
TAG_COMPRESSION: Final = "green.compression"
TAG_QUALITY_METRIC: Final = "green.quality_metric"
TAG_BUDGET_STOP: Final = "green.budget_stop"
"""Why an energy or emissions budget stopped the training (absent when it did not)."""
TAG_RESUMED_FROM: Final = "green.resumed_from"
"""The run a training resumed from a checkpoint of (when it logs into a new run, whose totals start at zero)."""
TAG_SIGNATURE: Final = "green.signature"
"""Ed25519 signature of the run's green values (JSON: key id, manifest digest, signature); see record.signing."""

TAG_INFERENCE_METERS: Final = "green.inference_meters"
"""``green.meters`` of the inference measurement (a training run keeps its own ``green.meters``)."""
TAG_INFERENCE_SCOPE: Final = "green.inference_scope"
TAG_INFERENCE_ESTIMATED: Final = "green.inference_estimated"
TAG_INFERENCE_BATCH_SIZE: Final = "green.inference_batch_size"
"""The headline batch size: the one whose inference figures are the latest values."""
TAG_INFERENCE_MODEL_RUN: Final = "green.inference_model_run"
"""The run that logged the model an evaluation measured: a version's ``green.inference_run`` must
name an evaluation of that version's own source run (ranking and gates check it)."""
TAG_RUN_TOKEN: Final = "green.run_token"
"""A unique token set on every run mlflow-green creates: a creation retried (by the background
writer or ``mlflow-green sync``) after its answer was lost finds the run instead of creating two."""

# --- artifacts -------------------------------------------------------------------------------
REPORT_ARTIFACT: Final = "green/report.json"
SIGNED_MANIFEST_ARTIFACT: Final = "green/signed_manifest.json"
"""The exact bytes signed: run id, every green/ metric's latest value, every green. tag, report.json's SHA-256."""
INFERENCE_REPORT_ARTIFACT: Final = "green/inference_report.json"

# --- model-registry tags ---------------------------------------------------------------------
TAG_GATE: Final = "green.gate"
TAG_GATE_REASONS: Final = "green.gate.reasons"
TAG_GATE_POLICY: Final = "green.gate.policy"
TAG_GATE_PREFIX: Final = "green.gate"
"""Model-version and registered-model tags under this prefix are written by the gate only."""
TAG_GATE_HOLDER_PREFIX: Final = "green.gate.holder."
"""Registered-model tags ``green.gate.holder.alias.<alias>`` / ``green.gate.holder.stage.<Stage>``:
the version the gate last promoted there, and its quality per kWh (JSON)."""


def gate_holder_tag(kind: str, name: str) -> str:
    """The registered-model tag remembering the last holder of an alias or stage.

    Example:
        >>> gate_holder_tag("alias", "champion")
        'green.gate.holder.alias.champion'
    """
    if kind not in ("alias", "stage"):
        raise ValueError(f"kind must be 'alias' or 'stage', got {kind!r}")
    return f"{TAG_GATE_HOLDER_PREFIX}{kind}.{name}"


TAG_INFERENCE_RUN: Final = "green.inference_run"
"""On a model version: the run of its latest ``green`` evaluation (inference energy)."""

_COMPONENT_ENERGY: Final = {"gpu": ENERGY_GPU_KWH, "cpu": ENERGY_CPU_KWH, "ram": ENERGY_RAM_KWH}
_PHASE_ENERGY: Final = {
    "train": ENERGY_TRAIN_KWH,
    "validation": ENERGY_VALIDATION_KWH,
    "data": ENERGY_DATA_KWH,
    "other": ENERGY_OTHER_KWH,
    "test": ENERGY_TEST_KWH,
    "predict": ENERGY_PREDICT_KWH,
    "validate": ENERGY_VALIDATE_KWH,
}
PHASES: Final = tuple(_PHASE_ENERGY)
INFERENCE_METRICS: Final = (
    INFERENCE_ENERGY_PER_PREDICTION_J,
    INFERENCE_POWER_W,
    INFERENCE_LATENCY_MS,
    INFERENCE_LATENCY_P95_MS,
    INFERENCE_THROUGHPUT_PER_S,
    INFERENCE_ENERGY_KWH,
)


def component_energy_key(component: str) -> str:
    """The metric key of one component's energy (``gpu``, ``cpu`` or ``ram``)."""
    return _COMPONENT_ENERGY[component]


def phase_energy_key(phase: str) -> str:
    """The metric key of one phase's energy (``train``, ``validation``, ``data``, ``other``, ``test``, ``predict``, ``validate``)."""
    return _PHASE_ENERGY[phase]


def phase_energy_per_sample_key(phase: str) -> str:
    """Joules per sample of one phase, e.g. ``green/energy_per_sample_predict_j``."""
    if phase not in _PHASE_ENERGY:
        raise KeyError(phase)
    return f"green/energy_per_sample_{phase}_j"
