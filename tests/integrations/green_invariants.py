"""What every run a training callback logs must satisfy, checked on the real MLflow store.

- one point per step for every ``green/`` metric;
- train + validation + data + other = energy within 0.1 % at every step energy was logged;
- the final projected energy equals the final energy (the fit has ended);
- energy and duration never decrease.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from mlflow import MlflowClient

from mlflow_green.record import schema

PHASE_KEYS = (schema.ENERGY_TRAIN_KWH, schema.ENERGY_VALIDATION_KWH, schema.ENERGY_DATA_KWH, schema.ENERGY_OTHER_KWH)


def histories(run_id: str, client: MlflowClient | None = None) -> dict[str, list[Any]]:
    """Every ``green/`` metric's history, sorted by step."""
    client = client or MlflowClient()
    run = client.get_run(run_id)
    out = {}
    for key in run.data.metrics:
        if key.startswith(schema.METRIC_PREFIX):
            out[key] = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    return out


def assert_green_invariants(run_id: str, client: MlflowClient | None = None, *, finished: bool = True) -> dict[str, list[Any]]:
    """Assert the invariants above on ``run_id``; returns the histories."""
    hist = histories(run_id, client)
    for key, points in hist.items():
        steps = [m.step for m in points]
        assert len(steps) == len(set(steps)), f"{key} has several points at one step: {steps}"
    assert schema.ENERGY_KWH in hist, "no green/energy_kwh"
    by_step: dict[int, dict[str, float]] = defaultdict(dict)
    for key in (schema.ENERGY_KWH, *PHASE_KEYS):
        for m in hist.get(key, []):
            by_step[m.step][key] = m.value
    for step, values in by_step.items():
        energy = values[schema.ENERGY_KWH]
        assert all(k in values for k in PHASE_KEYS), f"step {step}: phases missing: {sorted(values)}"
        phases = sum(values[k] for k in PHASE_KEYS)
        assert abs(phases - energy) <= 1e-3 * energy + 1e-15, f"step {step}: phases {phases} != energy {energy}"
        assert all(values[k] >= 0 for k in PHASE_KEYS), values
    for key in (schema.ENERGY_KWH, schema.DURATION_S):
        values = [m.value for m in hist.get(key, [])]
        assert values == sorted(values), f"{key} decreased: {values}"
    if finished and schema.PROJECTED_ENERGY_KWH in hist:
        final_projection = hist[schema.PROJECTED_ENERGY_KWH][-1]
        final_energy = hist[schema.ENERGY_KWH][-1]
        assert final_projection.step == final_energy.step
        assert abs(final_projection.value - final_energy.value) <= 1e-9 * final_energy.value
    return hist
