"""Impossible measurements (negative, zero where work was done, NaN, infinite) fail every rule that
reads them, with a reason naming the value — in a real sqlite store through gates.check."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient

from mlflow_green.gates import Evidence, Incumbent, Rules, check, evaluate, loads_policy
from mlflow_green.record import schema

PREDICT_J = schema.phase_energy_per_sample_key("predict")
GOOD = {
    schema.ENERGY_KWH: 0.2,
    schema.EMISSIONS_KG: 0.05,
    schema.DURATION_S: 120.0,
    schema.QUALITY: 0.9,
    schema.ACCURACY_PER_KWH: 4.5,
    schema.CARBON_INTENSITY_G_PER_KWH: 250.0,
}
EVERY_RULE = (
    "[default]\nmax_energy_kwh = 1\nmax_emissions_kg = 1\nmin_accuracy_per_kwh = 1\n"
    "max_energy_per_sample_predict_j = 1\nmax_model_size_bytes = 1e9\nmin_sparsity = 0\n"
)

# (metric, impossible value, words of the reason, rules that read the metric)
IMPOSSIBLE = [
    (schema.ENERGY_KWH, -5.0, "green/energy_kwh = -5 kWh is impossible (negative energy)",
     {"max_energy_kwh", "max_emissions_kg", "min_accuracy_per_kwh"}),
    (schema.ENERGY_KWH, 0.0, "green/energy_kwh = 0 Wh is impossible for a run that did work (green/duration_s = 120 s)",
     {"max_energy_kwh", "max_emissions_kg", "min_accuracy_per_kwh"}),
    (schema.ENERGY_KWH, math.nan, "green/energy_kwh is NaN (not a number): not a measurement",
     {"max_energy_kwh", "max_emissions_kg", "min_accuracy_per_kwh"}),
    (schema.ENERGY_KWH, math.inf, "green/energy_kwh is infinite: not a measurement",
     {"max_energy_kwh", "max_emissions_kg", "min_accuracy_per_kwh"}),
    (schema.EMISSIONS_KG, -0.1, "green/emissions_kg = -100 g CO2e is impossible (negative emissions)", {"max_emissions_kg"}),
    (schema.EMISSIONS_KG, 0.0, "green/emissions_kg = 0 g CO2e is impossible for a run that did work", {"max_emissions_kg"}),
    (schema.EMISSIONS_KG, -math.inf, "green/emissions_kg is -infinite", {"max_emissions_kg"}),
    (schema.DURATION_S, -1.0, "green/duration_s = -1 s is impossible (negative duration)",
     {"max_energy_kwh", "max_emissions_kg", "min_accuracy_per_kwh"}),
    (schema.DURATION_S, 0.0, "green/duration_s = 0 s is impossible for a run that did work (green/energy_kwh = 200 Wh)",
     {"max_energy_kwh", "max_emissions_kg", "min_accuracy_per_kwh"}),
    (schema.DURATION_S, math.nan, "green/duration_s is NaN",
     {"max_energy_kwh", "max_emissions_kg", "min_accuracy_per_kwh"}),
    (schema.QUALITY, -0.5, "green/quality = -0.5 is impossible (negative quality)", {"min_accuracy_per_kwh"}),
    (schema.QUALITY, math.nan, "green/quality is NaN", {"min_accuracy_per_kwh"}),
    (schema.ACCURACY_PER_KWH, -4.5, "green/accuracy_per_kwh = -4.5 per kWh is impossible", {"min_accuracy_per_kwh"}),
    (schema.ACCURACY_PER_KWH, math.inf, "green/accuracy_per_kwh is infinite", {"min_accuracy_per_kwh"}),
    (PREDICT_J, 0.0, "green/energy_per_sample_predict_j = 0 J is impossible for a run that did work",
     {"max_energy_per_sample_predict_j"}),
    (PREDICT_J, -1e-3, "is impossible (negative inference energy per sample)", {"max_energy_per_sample_predict_j"}),
    (schema.MODEL_SIZE_BYTES, -10.0, "green/model_size_bytes = -10 B is impossible", {"max_model_size_bytes"}),
    (schema.MODEL_SPARSITY, 1.5, "green/model_sparsity = 1.5 is impossible (sparsity is a fraction from 0 to 1)",
     {"min_sparsity"}),
]


@pytest.mark.parametrize(("metric", "value", "words", "readers"), IMPOSSIBLE,
                         ids=[f"{m.split('/')[1]}={v}" for m, v, _, _ in IMPOSSIBLE])
def test_an_impossible_value_fails_every_rule_that_reads_it(metric: str, value: float, words: str, readers: set[str]) -> None:
    metrics = {**GOOD, PREDICT_J: 0.01, schema.MODEL_SIZE_BYTES: 1e6, schema.MODEL_SPARSITY: 0.2, metric: value}
    results = evaluate(loads_policy(EVERY_RULE).rules(), Evidence(run_id="r", metrics=metrics))
    failed = {r.rule: r for r in results if not r.passed}
    assert set(failed) == readers, [r.detail for r in results]
    for rule in readers:
        assert words in failed[rule].detail
        assert not isinstance(failed[rule].actual, float) or math.isfinite(failed[rule].actual)  # JSON-safe


@pytest.mark.parametrize(
    ("energy_kwh", "words"),
    [
        (-5.0, "green/energy_kwh = -5 kWh is impossible (negative energy)"),
        (0.0, "green/energy_kwh = 0 Wh is impossible for a run that did work (green/duration_s = 60 s)"),
        (math.nan, "green/energy_kwh is NaN (not a number): not a measurement"),
        (math.inf, "green/energy_kwh is infinite: not a measurement"),  # sqlite keeps it as 1.8e308
    ],
    ids=["negative", "zero", "nan", "inf"],
)
def test_impossible_energy_logged_to_a_real_run_fails_max_energy_kwh(
    client: MlflowClient, model_name: str, make_version, energy_kwh: float, words: str
) -> None:
    version = make_version({schema.ENERGY_KWH: energy_kwh, schema.DURATION_S: 60.0})
    result = check(model_name, version, loads_policy("[default]\nmax_energy_kwh = 0.5"), client=client)
    assert not result.passed and result.failed[0].detail == words
    tags = client.get_model_version(model_name, version).tags
    assert tags[schema.TAG_GATE] == "failed" and words in tags[schema.TAG_GATE_REASONS]


def test_zero_emissions_are_possible_at_zero_carbon_intensity() -> None:
    evidence = Evidence(run_id="r", metrics={**GOOD, schema.EMISSIONS_KG: 0.0, schema.CARBON_INTENSITY_G_PER_KWH: 0.0})
    assert all(r.passed for r in evaluate(Rules(max_emissions_kg=1.0), evidence))


def test_possible_values_at_the_edges_pass() -> None:
    evidence = Evidence(run_id="r", metrics={**GOOD, schema.QUALITY: 0.0, schema.ACCURACY_PER_KWH: 0.0,
                                             schema.MODEL_SPARSITY: 1.0})
    results = evaluate(Rules(max_energy_kwh=1.0, min_accuracy_per_kwh=0.0, min_sparsity=1.0), evidence)
    assert [r.status for r in results] == ["PASS", "PASS", "PASS"]


@pytest.mark.parametrize(
    ("holder_value", "words"),
    [(math.nan, "green/accuracy_per_kwh is NaN"), (math.inf, "is infinite"), (-3.0, "is impossible (negative quality per kWh)")],
)
def test_an_impossible_holder_value_is_a_failure_to_compare_not_a_pass(holder_value: float, words: str) -> None:
    evidence = Evidence(run_id="r", metrics=GOOD, target="alias champion", version="5",
                        incumbent=Incumbent("4", holder_value, target="alias champion"))
    (result,) = evaluate(Rules(beat_current_by_percent=5.0), evidence)
    assert not result.passed
    assert result.detail.startswith("cannot compare with version 4 (holds alias champion): ")
    assert words in result.detail


def test_an_unmeasured_holder_still_does_not_block() -> None:
    evidence = Evidence(run_id="r", metrics=GOOD, target="alias champion", version="5",
                        incumbent=Incumbent("4", None, target="alias champion"))
    (result,) = evaluate(Rules(beat_current_by_percent=5.0), evidence)
    assert result.passed and "has no green/accuracy_per_kwh logged" in result.detail
