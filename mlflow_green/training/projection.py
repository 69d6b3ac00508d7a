"""Projected energy of a training: what the planned epochs (or steps) will cost at the steady rate.

The first epoch often carries one-off work (graph compilation, cuDNN autotuning, warm caches):
when it costs more than :data:`OUTLIER_FACTOR` times the median of the later epochs it is left
out of the rate. With a step limit (``max_steps``) the rate is per optimizer step; with both
limits the nearer end wins. Once the fit has ended, the projection is the actual total.

Example:
    >>> p = EnergyProjection(planned_epochs=5)
    >>> for energy_j in (300.0, 100.0, 100.0):   # epoch 0 compiles the graph
    ...     p.record_epoch(energy_j)
    >>> p.projected_j(total_j=510.0)
    710.0
"""

from __future__ import annotations

import statistics

OUTLIER_FACTOR = 1.5
"""A first epoch costing more than this times the median of the later ones is not steady state."""


class EnergyProjection:
    """Forecasts the energy of a fit from the epochs measured so far.

    Args:
        planned_epochs: The epoch index the fit ends at (exclusive); 0 when unknown.
        planned_steps: The optimizer step the fit ends at (``max_steps``); None when unlimited.
        first_epoch: The epoch the fit starts at (a resumed fit starts later).
    """

    def __init__(self, planned_epochs: int = 0, planned_steps: int | None = None, first_epoch: int = 0) -> None:
        self.planned_epochs = max(int(planned_epochs or 0), 0)
        self.planned_steps = int(planned_steps) if planned_steps and planned_steps > 0 else None
        self.first_epoch = int(first_epoch)
        self.epoch_energies_j: list[float] = []
        self.epoch_steps: list[int] = []
        self.steps_done: int | None = None
        self._steady_indices: list[int] = []

    @property
    def epochs_done(self) -> int:
        """Epochs measured in this fit."""
        return len(self.epoch_energies_j)

    def record_epoch(self, energy_j: float, *, steps: int | None = None, steps_done: int | None = None) -> None:
        """One epoch (all ranks) used ``energy_j`` over ``steps`` optimizer steps; ``steps_done`` so far in all."""
        self.epoch_energies_j.append(float(energy_j))
        self.epoch_steps.append(max(int(steps or 0), 0))
        self._steady_indices = self._find_steady()
        if steps_done is not None:
            self.steps_done = int(steps_done)

    def _steady(self) -> list[int]:
        return self._steady_indices

    def _find_steady(self) -> list[int]:
        """Indices of the steady-state epochs (the first left out when it is an outlier)."""
        indices = list(range(len(self.epoch_energies_j)))
        if len(indices) >= 2:
            later = statistics.median(self.epoch_energies_j[1:])
            if later > 0 and self.epoch_energies_j[0] > OUTLIER_FACTOR * later:
                return indices[1:]
        return indices

    def mean_epoch_j(self) -> float | None:
        """Energy of a steady-state epoch (None before the first)."""
        steady = self._steady()
        if not steady:
            return None
        return sum(self.epoch_energies_j[i] for i in steady) / len(steady)

    def step_j(self) -> float | None:
        """Energy of a steady-state optimizer step (None when steps are not counted)."""
        steady = [i for i in self._steady() if self.epoch_steps[i] > 0]
        steps = sum(self.epoch_steps[i] for i in steady)
        return sum(self.epoch_energies_j[i] for i in steady) / steps if steps else None

    def projected_j(self, total_j: float) -> float | None:
        """The energy at the planned end: ``total_j`` so far plus the remaining work at the steady rate."""
        remaining: list[float] = []
        mean_j = self.mean_epoch_j()
        if mean_j is not None and self.planned_epochs > 0:
            epochs_left = max(self.planned_epochs - self.first_epoch - self.epochs_done, 0)
            remaining.append(mean_j * epochs_left)
        step_j = self.step_j()
        if step_j is not None and self.planned_steps is not None and self.steps_done is not None:
            remaining.append(step_j * max(self.planned_steps - self.steps_done, 0))
        if not remaining:
            return None
        return total_j + min(remaining)
