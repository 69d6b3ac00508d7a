"""Energy of evaluations outside a fit: ``model.evaluate`` / ``trainer.test`` / ``trainer.validate`` / ``predict``.

Example:
    >>> from mlflow_green import EnergyTracker
    >>> from mlflow_green.testing import FakeMeter
    >>> evals = Evaluations()
    >>> evals.begin("test", EnergyTracker(meters=[FakeMeter({"cpu:0": 10.0})]))
    >>> m = evals.add("test", evals.end())
    >>> m.energy_j >= 0, evals.in_progress, list(evals.totals)
    (True, False, ['test'])
"""

from __future__ import annotations

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
        self.ended_kind: str | None = None
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

    def end(self) -> Measurement:
        """Stop the evaluation in progress; returns this process's measurement (see :meth:`add`)."""
        tracker, self.tracker = self.tracker, None
        self.ended_kind, self.kind = self.kind, None
        return tracker.stop() if tracker is not None else EMPTY

    def add(self, kind: str, measurement: Measurement) -> Measurement:
        """Add an evaluation's measurement (all ranks) to its kind's running total; returns it."""
        self.totals[kind] = self.totals.get(kind, EMPTY) + measurement
        return measurement

    def total(self) -> Measurement:
        """Every evaluation of the run together."""
        total = EMPTY
        for measurement in self.totals.values():
            total = total + measurement
        return total

    def reset(self) -> None:
        """A new run: no totals yet."""
        self.totals = {}
