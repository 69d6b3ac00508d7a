"""Projected energy of a training: what the planned epochs will cost at the rate seen so far.

Example:
    >>> p = EnergyProjection(planned_epochs=5)
    >>> p.record_epoch(100.0)
    >>> p.projected_j(total_j=110.0)
    510.0
"""

from __future__ import annotations


class EnergyProjection:
    """Forecasts the energy of a fit from the epochs measured so far.

    Args:
        planned_epochs: The epoch index the fit ends at (exclusive); 0 when unknown.
        first_epoch: The epoch the fit starts at (a resumed fit starts later).
    """

    def __init__(self, planned_epochs: int = 0, first_epoch: int = 0) -> None:
        self.planned_epochs = int(planned_epochs)
        self.first_epoch = int(first_epoch)
        self.epoch_energies_j: list[float] = []

    @property
    def epochs_done(self) -> int:
        """Epochs measured in this fit."""
        return len(self.epoch_energies_j)

    def record_epoch(self, energy_j: float) -> None:
        """One epoch (all ranks) used ``energy_j``."""
        self.epoch_energies_j.append(float(energy_j))

    def mean_epoch_j(self) -> float | None:
        """Mean energy of an epoch so far (None before the first)."""
        if not self.epoch_energies_j:
            return None
        return sum(self.epoch_energies_j) / len(self.epoch_energies_j)

    def projected_j(self, total_j: float) -> float | None:
        """The energy at the planned end: ``total_j`` so far plus the remaining epochs at the mean rate."""
        mean_j = self.mean_epoch_j()
        if mean_j is None:
            return None
        remaining = max(self.planned_epochs - self.first_epoch - self.epochs_done, 0)
        return total_j + mean_j * remaining
