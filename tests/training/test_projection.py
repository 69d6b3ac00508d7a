"""The projection's steady-state rates, kept as running figures, equal the definition at every epoch.

The definition (docs/schema.md, *projection*): the mean energy of the steady-state epochs — every epoch,
the first left out when it costs more than 1.5× the median of the later ones — and, with steps, the
energy of the steady epochs that counted steps over their steps. Fits with thousands of evaluation
windows (Hugging Face ``eval_steps``) record one "epoch" per window, so the figures are kept running
instead of recomputed over every earlier epoch.
"""

from __future__ import annotations

import math
import statistics

from hypothesis import given
from hypothesis import strategies as st

from mlflow_green.training.projection import OUTLIER_FACTOR, EnergyProjection


def _by_definition(energies: list[float], steps: list[int]) -> tuple[float | None, float | None]:
    steady = list(range(len(energies)))
    if len(energies) >= 2:
        later = statistics.median(energies[1:])
        if later > 0 and energies[0] > OUTLIER_FACTOR * later:
            steady = steady[1:]
    mean_j = sum(energies[i] for i in steady) / len(steady) if steady else None
    stepped = [i for i in steady if steps[i] > 0]
    total_steps = sum(steps[i] for i in stepped)
    step_j = sum(energies[i] for i in stepped) / total_steps if total_steps else None
    return mean_j, step_j


def _close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9))


epochs = st.lists(st.tuples(st.floats(0, 1e6, allow_nan=False), st.integers(0, 50)), min_size=1, max_size=60)


@given(epochs)
def test_running_rates_equal_the_definition_after_every_epoch(recorded: list[tuple[float, int]]) -> None:
    projection = EnergyProjection(planned_epochs=100, planned_steps=10_000)
    energies: list[float] = []
    steps: list[int] = []
    for energy_j, n in recorded:
        energies.append(energy_j)
        steps.append(n)
        projection.record_epoch(energy_j, steps=n, steps_done=sum(steps))
        mean_j, step_j = _by_definition(energies, steps)
        assert _close(projection.mean_epoch_j(), mean_j), (energies, steps)
        assert _close(projection.step_j(), step_j), (energies, steps)


def test_a_compilation_epoch_stops_being_an_outlier_when_later_epochs_grow() -> None:
    projection = EnergyProjection(planned_epochs=10)
    projection.record_epoch(300.0)
    projection.record_epoch(100.0)
    assert projection.mean_epoch_j() == 100.0  # epoch 0 left out: 300 > 1.5 × 100
    projection.record_epoch(250.0)
    projection.record_epoch(250.0)
    assert projection.mean_epoch_j() == 225.0  # median of later epochs 250: epoch 0 is steady again


def test_twenty_thousand_evaluation_windows_keep_the_definition() -> None:
    projection = EnergyProjection(planned_epochs=0, planned_steps=40_000)
    energies = [50.0] + [10.0 + (i % 7) for i in range(19_999)]
    for i, energy_j in enumerate(energies):
        projection.record_epoch(energy_j, steps=2, steps_done=2 * (i + 1))
    mean_j, step_j = _by_definition(energies, [2] * len(energies))
    assert _close(projection.mean_epoch_j(), mean_j) and _close(projection.step_j(), step_j)
    assert projection.projected_j(total_j=sum(energies)) == sum(energies)  # all planned steps done
