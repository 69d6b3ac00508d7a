"""Turns measurements into the metric and tag dicts of the schema (pure functions, no I/O).

Example:
    >>> from mlflow_green.measure.readings import DeviceEnergy, Measurement
    >>> from mlflow_green.carbon import offline_intensity
    >>> m = Measurement(10.0, (DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 3.6e6, 10.0),))
    >>> metrics = energy_metrics(m, offline_intensity("FRA"), pue=1.0)
    >>> metrics["green/energy_kwh"], metrics["green/energy_cpu_kwh"]
    (1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping

from mlflow_green.carbon import CarbonIntensity
from mlflow_green.measure.readings import Measurement
from mlflow_green.record import schema
from mlflow_green.units import joules_to_kwh


def energy_metrics(
    total: Measurement,
    carbon: CarbonIntensity,
    pue: float,
    *,
    window: Measurement | None = None,
    samples: int | None = None,
) -> dict[str, float]:
    """Running-total energy, emissions and duration metrics.

    Args:
        total: The measurement from the start of the run until now.
        carbon: The carbon intensity in force.
        pue: Power usage effectiveness applied to emissions (energy stays IT energy).
        window: The latest window (an epoch); its mean power is ``green/power_w`` and its
            energy ``green/epoch_energy_kwh``. Without it those two keys are left out, so a
            final log of totals does not overwrite the last epoch's figures.
        samples: Samples processed since the start, for ``green/energy_per_sample_j``.
    """
    metrics: dict[str, float] = {
        schema.ENERGY_KWH: joules_to_kwh(total.energy_j),
        schema.EMISSIONS_KG: carbon.emissions_kg(total.energy_j, pue),
        schema.CARBON_INTENSITY_G_PER_KWH: carbon.intensity_g_per_kwh,
        schema.DURATION_S: total.duration_s,
    }
    if window is not None:
        metrics[schema.EPOCH_ENERGY_KWH] = joules_to_kwh(window.energy_j)
        metrics[schema.POWER_W] = window.power_w
    for component in total.components:
        metrics[schema.component_energy_key(component)] = joules_to_kwh(total.component_energy_j(component))
    if samples:
        metrics[schema.ENERGY_PER_SAMPLE_J] = total.energy_j / samples
    return metrics


def phase_metrics(phases_j: Mapping[str, float]) -> dict[str, float]:
    """``green/energy_{phase}_kwh`` for each measured phase, from its running total in joules."""
    return {schema.phase_energy_key(name): joules_to_kwh(energy_j) for name, energy_j in phases_j.items()}


def run_tags(
    *,
    version: str,
    meters: str,
    estimated: bool,
    carbon: CarbonIntensity,
    pue: float,
    cpu: str,
    gpu: str | None = None,
    hosts: int = 1,
    world_size: int = 1,
    scope: str = "",
) -> dict[str, str]:
    """The ``green.*`` run tags. ``gpu`` None leaves ``green.hardware.gpu`` as the run context set it.

    ``scope`` is :meth:`~mlflow_green.measure.readings.Measurement.scope_tag` (``cpu:process,ram:process``);
    empty leaves ``green.scope`` unset until the total is known.
    """
    tags = {
        schema.TAG_VERSION: version,
        schema.TAG_METERS: meters,
        schema.TAG_ESTIMATED: "true" if estimated else "false",
        schema.TAG_REGION: carbon.region,
        schema.TAG_INTENSITY_SOURCE: carbon.source,
        schema.TAG_PUE: f"{pue:g}",
        schema.TAG_HARDWARE_CPU: cpu,
        schema.TAG_HOSTS: str(hosts),
        schema.TAG_WORLD_SIZE: str(world_size),
    }
    if gpu:
        tags[schema.TAG_HARDWARE_GPU] = gpu
    if scope:
        tags[schema.TAG_SCOPE] = scope
    return tags


def measured_gpus(total: Measurement) -> str | None:
    """``2x NVIDIA H100 80GB HBM3`` from the GPU devices measured; None when there were none."""
    from mlflow_green.measure.hardware import summarise_names

    labels = [d.label or d.device_id for d in total.devices if d.component == "gpu"]
    return summarise_names(labels) or None
