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

import bisect

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
        # running figures, so that an epoch costs O(log n) however long the fit (eval windows can be many)
        self._later_sorted_j: list[float] = []  # the energies of every epoch but the first, sorted
        self._sum_j = 0.0
        self._stepped_j = 0.0  # energy of the epochs that counted steps
        self._stepped = 0  # their steps
        self._first_is_outlier = False

    @property
    def epochs_done(self) -> int:
        """Epochs measured in this fit."""
        return len(self.epoch_energies_j)

    def record_epoch(self, energy_j: float, *, steps: int | None = None, steps_done: int | None = None) -> None:
        """One epoch (all ranks) used ``energy_j`` over ``steps`` optimizer steps; ``steps_done`` so far in all."""
        energy_j, steps = float(energy_j), max(int(steps or 0), 0)
        if self.epoch_energies_j:
            bisect.insort(self._later_sorted_j, energy_j)
        self.epoch_energies_j.append(energy_j)
        self.epoch_steps.append(steps)
        self._sum_j += energy_j
        if steps > 0:
            self._stepped_j += energy_j
            self._stepped += steps
        later = _median(self._later_sorted_j)
        self._first_is_outlier = later is not None and later > 0 and self.epoch_energies_j[0] > OUTLIER_FACTOR * later
        if steps_done is not None:
            self.steps_done = int(steps_done)

    def mean_epoch_j(self) -> float | None:
        """Energy of a steady-state epoch (None before the first); the first epoch left out when it is an outlier."""
        count = len(self.epoch_energies_j) - self._first_is_outlier
        if count <= 0:
            return None
        first_j = self.epoch_energies_j[0] if self._first_is_outlier else 0.0
        return (self._sum_j - first_j) / count

    def more_planned(self) -> bool:
        """False once the planned epochs (or ``max_steps``) are done — no next epoch for a budget to forecast;
        True while some are left, or when the plan is unknown."""
        if self.planned_epochs > 0 and self.planned_epochs - self.first_epoch - self.epochs_done <= 0:
            return False
        return not (self.planned_steps is not None and self.steps_done is not None and self.steps_done >= self.planned_steps)

    def step_j(self) -> float | None:
        """Energy of a steady-state optimizer step (None when steps are not counted)."""
        energy_j, steps = self._stepped_j, self._stepped
        if self._first_is_outlier and self.epoch_steps[0] > 0:
            energy_j, steps = energy_j - self.epoch_energies_j[0], steps - self.epoch_steps[0]
        return energy_j / steps if steps else None

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


def _median(sorted_values: list[float]) -> float | None:
    """The median of an already sorted list (None when empty).

    Example:
        >>> _median([1.0, 2.0, 10.0]), _median([1.0, 3.0]), _median([])
        (2.0, 2.0, None)
    """
    n = len(sorted_values)
    if n == 0:
        return None
    middle = n // 2
    return sorted_values[middle] if n % 2 else (sorted_values[middle - 1] + sorted_values[middle]) / 2
