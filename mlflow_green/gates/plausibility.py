"""Impossible measurements: values no real run can have fail every rule that reads them.

A client can log anything under ``green/``. Before a rule compares a value with its limit, the
values it reads are checked: NaN and infinities are not measurements; energy, emissions,
duration and inference energy are never negative, and never zero for a run that did work (we
never report 0 J for a device that ran); quality and quality per kWh are never negative; a model
size is positive and a sparsity lies in 0..1. A rule that reads an impossible value fails, and
its reason names the key and the value.

Example:
    >>> from mlflow_green.gates.evidence import Evidence
    >>> evidence = Evidence(run_id="r1", metrics={"green/energy_kwh": -5.0, "green/duration_s": 30.0})
    >>> impossible_input("max_energy_kwh", evidence)
    'green/energy_kwh = -5 kWh is impossible (negative energy)'
    >>> impossible_input("max_energy_kwh", Evidence(run_id="r1", metrics={"green/energy_kwh": 0.0, "green/duration_s": 30.0}))
    'green/energy_kwh = 0 Wh is impossible for a run that did work (green/duration_s = 30 s)'
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from mlflow_green.gates.evidence import Evidence
from mlflow_green.record import schema

Bound = Literal["positive", "non_negative", "fraction"]

PREDICT_J = schema.phase_energy_per_sample_key("predict")


@dataclass(frozen=True)
class Quantity:
    """What a plausible value of one metric looks like."""

    key: str
    what: str
    unit: str
    bound: Bound


QUANTITIES: Mapping[str, Quantity] = {
    q.key: q
    for q in (
        Quantity(schema.ENERGY_KWH, "energy", "kWh", "positive"),
        Quantity(schema.EMISSIONS_KG, "emissions", "kg", "positive"),
        Quantity(schema.DURATION_S, "duration", "s", "positive"),
        Quantity(schema.QUALITY, "quality", "", "non_negative"),
        Quantity(schema.ACCURACY_PER_KWH, "quality per kWh", "1/kWh", "non_negative"),
        Quantity(PREDICT_J, "inference energy per sample", "J", "positive"),
        Quantity(schema.MODEL_SIZE_BYTES, "model size", "bytes", "positive"),
        Quantity(schema.MODEL_SPARSITY, "sparsity", "", "fraction"),
    )
}
"""Every metric a rule reads, and its bounds."""

RULE_INPUTS: Mapping[str, tuple[str, ...]] = {
    "max_energy_kwh": (schema.ENERGY_KWH, schema.DURATION_S),
    "max_emissions_kg": (schema.EMISSIONS_KG, schema.ENERGY_KWH, schema.DURATION_S),
    "min_accuracy_per_kwh": (schema.ACCURACY_PER_KWH, schema.QUALITY, schema.ENERGY_KWH, schema.DURATION_S),
    "beat_current_by_percent": (schema.ACCURACY_PER_KWH, schema.QUALITY, schema.ENERGY_KWH, schema.DURATION_S),
    "max_energy_per_sample_predict_j": (PREDICT_J,),
    "max_model_size_bytes": (schema.MODEL_SIZE_BYTES,),
    "min_sparsity": (schema.MODEL_SPARSITY,),
}
"""The metrics each rule reads: the first is compared with the limit; the others (energy behind
quality per kWh, the duration that shows work was done) are checked when the run logged them."""


def fmt(value: float, unit: str = "") -> str:
    """A rule's value as every surface writes it (:mod:`mlflow_green.formatting`): ``800 Wh``,
    ``27.3 g CO2e``, ``4.2 mJ``, ``1,210 per kWh``, ``15.6 kB``; NaN and infinities as they are."""
    from mlflow_green import formatting

    if not math.isfinite(value):
        return f"{value} {unit}".strip()
    by_unit = {
        "kWh": formatting.energy_kwh, "kg": formatting.emissions_kg, "J": formatting.energy_j,
        "bytes": formatting.size_bytes, "1/kWh": lambda v: f"{formatting.ratio(v)} per kWh",
        "ms": lambda v: f"{formatting.significant(v)} ms", "s": lambda v: f"{formatting.significant(v)} s",
    }
    if unit in by_unit:
        return by_unit[unit](value)
    text = formatting.number(value)
    return f"{text} {unit}" if unit else text


def impossible_value(key: str, value: float, metrics: Mapping[str, float]) -> str | None:
    """Why ``value`` of metric ``key`` cannot come from a real run; None when it can.

    Args:
        key: The metric key (one of :data:`QUANTITIES`; others are only checked for NaN/inf).
        value: Its value.
        metrics: The run's other latest metrics (the duration shows whether work was done).
    """
    quantity = QUANTITIES.get(key)
    unit = quantity.unit if quantity else ""
    if math.isnan(value):
        return f"{key} is NaN (not a number): not a measurement"
    if math.isinf(value) or abs(value) >= sys.float_info.max:  # MLflow's SQL stores keep ±inf as ±max float
        return f"{key} is {'-' if value < 0 else ''}infinite: not a measurement"
    if quantity is None:
        return None
    shown = f"{key} = {fmt(value, unit)}"
    if value < 0:
        return f"{shown} is impossible (negative {quantity.what})"
    if quantity.bound == "fraction" and value > 1:
        return f"{shown} is impossible ({quantity.what} is a fraction from 0 to 1)"
    if quantity.bound == "positive" and value == 0 and not _zero_allowed(key, metrics):
        return f"{shown} is impossible for a run that did work{_work_shown(key, metrics)}"
    return None


def impossible_input(rule: str, evidence: Evidence) -> str | None:
    """The first impossible value among the metrics ``rule`` reads (see :data:`RULE_INPUTS`); None if all are possible."""
    for key in RULE_INPUTS.get(rule, ()):
        value = evidence.metrics.get(key)
        if value is None:
            continue
        problem = impossible_value(key, float(value), evidence.metrics)
        if problem is not None:
            return problem
    return None


def shown_value(value: float) -> float | str:
    """A value as a rule result carries it: the number, or ``"nan"`` / ``"inf"`` (JSON has neither)."""
    if math.isfinite(value) and abs(value) < sys.float_info.max:
        return value
    return "nan" if math.isnan(value) else "-inf" if value < 0 else "inf"


def _zero_allowed(key: str, metrics: Mapping[str, float]) -> bool:
    # zero emissions are consistent with a logged carbon intensity of exactly zero
    return key == schema.EMISSIONS_KG and metrics.get(schema.CARBON_INTENSITY_G_PER_KWH) == 0.0


def _work_shown(key: str, metrics: Mapping[str, float]) -> str:
    duration = metrics.get(schema.DURATION_S)
    if key != schema.DURATION_S and duration is not None and math.isfinite(duration) and duration > 0:
        return f" ({schema.DURATION_S} = {fmt(duration, 's')})"
    energy = metrics.get(schema.ENERGY_KWH)
    if key != schema.ENERGY_KWH and energy is not None and math.isfinite(energy) and energy > 0:
        return f" ({schema.ENERGY_KWH} = {fmt(energy, 'kWh')})"
    return " (a measured run always takes time and uses energy)"
