"""Energy of evaluations outside a fit: ``model.evaluate`` / ``trainer.test`` / ``trainer.validate`` / ``predict``.

Example:
    >>> from mlflow_green import EnergyTracker
    >>> from mlflow_green.testing import FakeMeter
    >>> evals = Evaluations()
    >>> evals.begin("test", EnergyTracker(meters=[FakeMeter({"cpu:0": 10.0})]))
    >>> evals.end().energy_j >= 0, evals.in_progress
    (True, False)
"""

from __future__ import annotations

from collections.abc import Callable

from mlflow_green.measure.readings import Measurement
from mlflow_green.measure.tracker import EnergyTracker
from mlflow_green.training.phases import EMPTY


class Evaluations:
    """The evaluation in progress (one at a time) and the running total of each kind in the run.

    Attributes:
        tracker: The tracker of the evaluation in progress, or None.
        kind: Its kind (``test``, ``validation``, ``predict``), or None.
        totals: Energy per kind over the run.
    """

    def __init__(self) -> None:
        self.tracker: EnergyTracker | None = None
        self.kind: str | None = None
        self.totals: dict[str, Measurement] = {}

    @property
    def in_progress(self) -> bool:
        """True between :meth:`begin` and :meth:`end`."""
        return self.tracker is not None

    def begin(self, kind: str, template: EnergyTracker) -> None:
        """Start measuring an evaluation of ``kind`` with a fresh copy of ``template``."""
        tracker = template.fresh()
        tracker.start()
        self.tracker, self.kind = tracker, kind

    def end(self, reduce: Callable[[Measurement], Measurement] = lambda m: m) -> Measurement:
        """Stop it; returns its measurement (all ranks, through ``reduce``), added to its kind's total."""
        tracker, kind = self.tracker, self.kind
        if tracker is None or kind is None:
            return EMPTY
        self.tracker, self.kind = None, None
        measurement = reduce(tracker.stop())
        self.totals[kind] = self.totals.get(kind, EMPTY) + measurement
        return measurement

    def reset(self) -> None:
        """A new run: no totals yet."""
        self.totals = {}
