"""Projected energy of a training: what the planned epochs (or steps) will cost at the steady rate.

An epoch's cost is what the running total grew by since the previous epoch's end: the epoch and
the work between it and the one before (another callback's checkpoint or evaluation at each
epoch's end recurs, and a forecast without it falls short). The fit's first epoch has no earlier
end in the fit (what ran before it, the fit's setup, does not recur): its window is the rate only
until a later epoch is done, then it is left out — it lacks the work after it that recurs, and often
carries one-off work (graph compilation, cuDNN autotuning, warm caches). Each remaining epoch's cost
holds the work before it, so the work after the current one is in the forecast, but not the work
after the last: one mean stretch between epochs (an epoch's cost less its window) is added for it. Without the running totals
(``record_epoch`` given windows only), the first epoch is left out when it costs more than
:data:`OUTLIER_FACTOR` times the median of the later ones. With a step limit (``max_steps``) the rate
is per optimizer step inside the epochs' windows, and the work between epochs is added once per epoch to come
(the last one, cut short by the limit, too); with both limits the nearer end wins. Once the fit has ended, the projection
is the actual total.

Example:
    >>> p = EnergyProjection(planned_epochs=5)
    >>> p.record_epoch(300.0, total_j=310.0)   # epoch 0 compiles the graph (10 J of setup before it)
    >>> p.projected_j(total_j=310.0)            # four epochs left at epoch 0's rate: all there is so far
    1510.0
    >>> p.record_epoch(90.0, total_j=410.0)    # 90 J in the epoch, 10 J of checkpoint before it
    >>> p.record_epoch(90.0, total_j=510.0)
    >>> p.projected_j(total_j=510.0)            # two epochs left at 100 J each, and the last one's checkpoint
    720.0
"""

from __future__ import annotations

import bisect
import math

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
        self._stepped_j = 0.0  # energy of the epochs that counted steps (their windows: see step_j)
        self._stepped = 0  # their steps
        self._stepped_epochs = 0
        self._first_left_out = False  # an outlier, or the later epochs' costs are the total's growth
        self._last_total_j: float | None = None  # the running total at the last epoch's end
        self._grown = False  # a later epoch's cost is the total's growth
        self._first_window_j = 0.0
        self._between_j, self._betweens = 0.0, 0  # the work between epochs: each grown epoch's cost less its window

    @property
    def epochs_done(self) -> int:
        """Epochs measured in this fit."""
        return len(self.epoch_energies_j)

    def record_epoch(self, energy_j: float, *, total_j: float | None = None, steps: int | None = None,
                     steps_done: int | None = None) -> None:
        """One epoch (all ranks) used ``energy_j`` in its window over ``steps`` optimizer steps; the running
        total is ``total_j`` at its end, ``steps_done`` the optimizer steps so far in all.

        After the fit's first epoch, the epoch's cost is the total's growth since the last epoch's end
        (its window and the work between the two), when ``total_j`` is given and has not gone back; the
        first epoch then leaves the rate (see the module's docstring).
        """
        energy_j, steps = float(energy_j), max(int(steps or 0), 0)
        window_j = energy_j
        if total_j is not None:
            last_j, self._last_total_j = self._last_total_j, float(total_j)
            if last_j is not None and self.epoch_energies_j and total_j >= last_j:  # (a reading reused: equal, to rounding)
                self._grown = True
                energy_j = max(float(total_j) - last_j, window_j)
                self._between_j, self._betweens = self._between_j + energy_j - window_j, self._betweens + 1
        if self.epoch_energies_j:
            bisect.insort(self._later_sorted_j, energy_j)
        else:
            self._first_window_j = window_j
        self.epoch_energies_j.append(energy_j)
        self.epoch_steps.append(steps)
        self._sum_j += energy_j
        if steps > 0:
            self._stepped_j += window_j
            self._stepped, self._stepped_epochs = self._stepped + steps, self._stepped_epochs + 1
        later = _median(self._later_sorted_j)
        self._first_left_out = self._grown or (later is not None and later > 0
                                                 and self.epoch_energies_j[0] > OUTLIER_FACTOR * later)
        if steps_done is not None:
            self.steps_done = int(steps_done)

    def mean_epoch_j(self) -> float | None:
        """Energy of a steady-state epoch (None before the first); the first epoch left out as the module's docstring says."""
        count = len(self.epoch_energies_j) - self._first_left_out
        if count <= 0:
            return None
        first_j = self.epoch_energies_j[0] if self._first_left_out else 0.0
        return (self._sum_j - first_j) / count

    def more_planned(self) -> bool:
        """False once the planned epochs (or ``max_steps``) are done — no next epoch for a budget to forecast;
        True while some are left, or when the plan is unknown."""
        if self.planned_epochs > 0 and self.planned_epochs - self.first_epoch - self.epochs_done <= 0:
            return False
        return not (self.planned_steps is not None and self.steps_done is not None and self.steps_done >= self.planned_steps)

    def step_j(self) -> float | None:
        """Energy of a steady-state optimizer step inside an epoch's window (None when steps are not counted): the work
        between epochs is counted per epoch boundary (see :meth:`projected_j`), not spread over the steps."""
        energy_j, steps = self._stepped_j, self._stepped
        if self._first_left_out and self.epoch_steps[0] > 0:  # (the first epoch's own window: nothing between before it)
            energy_j, steps = energy_j - self._first_window_j, steps - self.epoch_steps[0]
        return energy_j / steps if steps else None

    def projected_j(self, total_j: float) -> float | None:
        """The energy at the planned end: ``total_j`` so far plus the remaining work at the steady rate, and the
        work that follows the last epoch as it follows each (see the module's docstring)."""
        remaining: list[float] = []
        mean_j = self.mean_epoch_j()
        if mean_j is not None and self.planned_epochs > 0:
            epochs_left = max(self.planned_epochs - self.first_epoch - self.epochs_done, 0)
            remaining.append(mean_j * epochs_left)
        step_j = self.step_j()
        between_j = self._between_j / self._betweens if self._betweens else 0.0  # the mean work between two epochs
        if step_j is not None and self.planned_steps is not None and self.steps_done is not None:
            steps_left = max(self.planned_steps - self.steps_done, 0)
            per_epoch = self._stepped / self._stepped_epochs  # epochs to come, the last one cut short: each after a stretch
            remaining.append(step_j * steps_left + math.ceil(steps_left / per_epoch) * between_j)
        if not remaining:
            return None
        return total_j + min(remaining) + between_j  # and the stretch after the last epoch (its checkpoint)


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
