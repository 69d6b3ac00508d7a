"""An epoch's end — a part of :class:`~mlflow_green.training.session.TrainingSession`.

The training thread does only what must be done at the epoch's end: the end reading (usually the
last validation's, see :mod:`~mlflow_green.training.session_windows`), the sample counts (summed
over ranks), the step, a copy of the epoch's logs, and — only when asked for — the figures of the
progress bar and the budget check. The epoch's accounting (the quality, the split into phases, the
running totals, the projection, the metrics and their write) is an :class:`EpochWindow` handed to the session's
:class:`~mlflow_green.training.deferred.DeferredWork`; with an active budget it is done at once,
since the budget needs the projection that includes this epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_green.config import GreenConfig
from mlflow_green.measure.readings import Measurement, Snapshot, energy_between
from mlflow_green.record import schema
from mlflow_green.training import outer_calls
from mlflow_green.training.figures import budget_reason, projection_metrics, running_metrics
from mlflow_green.training.phases import EMPTY, validation_of
from mlflow_green.units import joules_to_kwh

if TYPE_CHECKING:
    from mlflow_green.measure.tracker import EnergyTracker
    from mlflow_green.training.session import TrainingSession

logger = logging.getLogger(__name__)

LIVE_KEYS = (schema.ENERGY_KWH, schema.EMISSIONS_KG, schema.POWER_W)
"""The figures shown in the progress bar at each epoch's end."""


@dataclass(slots=True)
class EpochWindow:
    """What the training thread took at an epoch's end, for its accounting (done later, in order)."""

    epoch: int
    step: int
    start: Snapshot
    end: Snapshot
    fit_start: Snapshot
    validation: tuple[tuple[Snapshot, Snapshot], ...]  # the (begin, end) readings of its validation windows
    after_validation: Snapshot | None  # where the stretch after its last validation begins (to ``end``), if any
    data_wait_s: float
    gap_s: float
    carried: Measurement
    train_samples: int | None
    logs: Mapping[str, Any] | None  # the epoch's metrics (a copy; tensors read by the accounting), for the quality
    steps: int | None
    steps_done: int | None
    measured: Mapping[str, Measurement] | None = None  # all ranks, when distributed (combined at once)
    begun: int = 0  # epochs begun when it ended: more by its accounting's time means the next epoch began

    def local(self) -> dict[str, Measurement]:
        """This rank's windows: the epoch, its validation, the stretch after it, the fit so far."""
        return {"epoch": self.end - self.start, "validation": validation_of(self.validation),
                "after_validation": EMPTY if self.after_validation is None else self.end - self.after_validation,
                "total": self.end - self.fit_start}

    def measurements(self) -> Mapping[str, Measurement]:
        """All ranks' windows when distributed (combined at the epoch's end), else this rank's."""
        return self.measured if self.measured is not None else self.local()


class EpochResult:
    """What one epoch measured, for the adapter (worked out when first read).

    Attributes:
        stop_reason: Non-empty when a budget says training must stop.
    """

    def __init__(self, measurement: Callable[[], Measurement], live: Callable[[], dict[str, float]],
                 stop_reason: str | None = None) -> None:
        self._measurement, self._live = measurement, live
        self._measured: Measurement | None = None
        self._figures: dict[str, float] | None = None
        self.stop_reason = stop_reason

    @classmethod
    def of(cls, measurement: Measurement, live: Mapping[str, float] | None = None, stop_reason: str | None = None) -> EpochResult:
        """A result worked out already."""
        return cls(lambda: measurement, lambda: dict(live or {}), stop_reason)

    @property
    def measurement(self) -> Measurement:
        """The epoch window (all ranks; worked out on first read)."""
        if self._measured is None:
            self._measured = self._measurement()
        return self._measured

    @property
    def live(self) -> dict[str, float]:
        """The few figures to show in the progress bar (schema keys; worked out on first read)."""
        if self._figures is None:  # a plain attribute: a cached_property takes a lock (Python 3.11)
            self._figures = self._live()
        return self._figures


def live_figures(total_j: float, epoch_j: float, epoch_s: float, config: GreenConfig) -> dict[str, float]:
    """The progress bar's figures: the running total's energy and emissions, the epoch's mean power."""
    return {
        schema.ENERGY_KWH: joules_to_kwh(total_j),
        schema.EMISSIONS_KG: config.carbon.emissions_kg(total_j, config.pue),
        schema.POWER_W: epoch_j / epoch_s if epoch_s > 0 else 0.0,
    }


class EpochEndMixin:
    """The epoch-end methods of a training session."""

    def replan(self: TrainingSession, planned_epochs: int | None) -> None:
        """The fit's planned end moved after it began (``StochasticWeightAveraging``'s ``on_fit_start``, after ours,
        adds an epoch): the projection forecasts to the new end."""
        if planned_epochs is not None and planned_epochs > 0:
            self._projection.planned_epochs = int(planned_epochs)

    def end_epoch(self: TrainingSession, epoch: int, *, logs: Mapping[str, Any] | None = None, train_samples: int | None = None,
                  steps_done: int | None = None) -> EpochResult:
        """An epoch ends: split it into phases, log running totals at step = epoch, check budgets.

        ``train_samples`` are this rank's; ``steps_done`` counts optimizer steps since training began.
        """
        tracker = self.tracker
        if tracker is None or self._epoch_start is None:
            return EpochResult.of(EMPTY)
        start = self._epoch_start
        now, after_validation = self._end_epoch_window()
        self.count("train", train_samples)
        epoch_steps = None if steps_done is None else int(steps_done) - self._steps_done
        self._steps_done = self._steps_done if steps_done is None else int(steps_done)
        self._epoch_start = self._epoch = None
        self._last_epoch_end = now
        ledger = self._ledger
        window = EpochWindow(
            epoch=int(epoch), step=self.steps.step_for(epoch), start=start, end=now, fit_start=tracker.start_snapshot,
            validation=ledger.validation_windows, after_validation=after_validation, data_wait_s=ledger.data_wait_s,
            gap_s=ledger.gap_s, carried=self.carried, train_samples=None, logs=dict(logs) if logs else None, steps=epoch_steps,
            steps_done=None if steps_done is None else int(steps_done), begun=self._epochs_begun,
        )
        if self.dist.distributed:  # a collective: every rank, now
            window.measured, counts = self.dist.combine(window.local(), self._take_counts())
        else:
            counts = self._take_counts()
        self._add_samples(counts)
        window.train_samples = self.samples.get("train")
        if self.budget.active:  # the budget needs this epoch's projection now
            self._deferred.settle()
            total, epoch_m = self._account_epoch(window, tracker)
            next_epoch_j = self._projection.mean_epoch_j() if self._projection.more_planned() else None  # the last: none
            reason = budget_reason(self.budget, self.config, total, next_epoch_j=next_epoch_j)
            if reason:
                self.stop_reason = reason
            live = live_figures(total.energy_j, epoch_m.energy_j, epoch_m.duration_s, self.config)
            return EpochResult.of(epoch_m, live, reason)
        self._deferred.submit(lambda: self._account_epoch(window, tracker))
        return EpochResult(lambda: _epoch_measurement(window), lambda: _live(window, self.config, tracker))

    def _account_epoch(self: TrainingSession, window: EpochWindow, tracker: EnergyTracker) -> tuple[Measurement, Measurement]:
        """The epoch's accounting: phases, running totals, projection, metrics (held at its step)."""
        measured = window.measurements()
        epoch_m = measured["epoch"]
        if window.logs:  # tensors read here, off the training thread (only the quality metric's)
            self._update_quality(window.logs)
        quality = self._quality
        try:
            tracker.check_granularity(epoch_m, f"epoch {window.epoch}")  # too short for the counters?
        except Exception as exc:  # a meter failing over meanwhile: the check is for the report only
            logger.debug("mlflow-green: granularity check of epoch %s skipped: %r", window.epoch, exc)
        split = self._ledger.end_epoch(epoch_m, validation=measured["validation"], after=measured["after_validation"],
                                       data_wait_s=window.data_wait_s, gap_s=window.gap_s)
        total = self._last_total = window.carried + measured["total"]
        self._projection.record_epoch(epoch_m.energy_j, total_j=total.energy_j, steps=window.steps, steps_done=window.steps_done)
        self._gathered = (measured["total"], window.end)
        metrics = running_metrics(total, self.config, window=epoch_m, train_samples=window.train_samples,
                                  phases_j=self._ledger.energy_with_other_j(total), quality=quality)
        metrics.update(projection_metrics(self._projection.projected_j(total.energy_j), self.config))
        # Held (spooled, not sent) until the next epoch begins, so that a training killed meanwhile keeps
        # its step; if the next epoch has begun already, its start's send is queued right behind this
        # job and spools the same values: a hold would be written only to be released at once.
        self._log(metrics, window.step, hold=self._epochs_begun == window.begun)
        outer_calls.warn_if_concurrent(self.output)  # a fit begun in another thread since this one's began: each warned
        self._epochs.append({
            "epoch": window.epoch, "step": window.step, "duration_s": epoch_m.duration_s, "energy_j": epoch_m.energy_j,
            "phases_j": split, "data_wait_s": window.data_wait_s,
            **({"steps": window.steps} if window.steps is not None else {}),
            **({"quality": {quality[0]: quality[1]}} if quality else {}),
        })
        return total, epoch_m


def _epoch_measurement(window: EpochWindow) -> Measurement:
    return window.measured["epoch"] if window.measured is not None else window.end - window.start


def _live(window: EpochWindow, config: GreenConfig, tracker: EnergyTracker) -> dict[str, float]:
    """The progress bar's figures without building the measurements (the same sums as the accounting's;
    readings not worked out yet are previewed from their captures, the work left to the accounting)."""
    if window.measured is not None:
        total, epoch_m = window.carried + window.measured["total"], window.measured["epoch"]
        return live_figures(total.energy_j, epoch_m.energy_j, epoch_m.duration_s, config)
    end_j, start_j, fit_start_j = tracker.energies_j(window.end, window.start, window.fit_start)
    total_j = window.carried.energy_j + energy_between(end_j, fit_start_j)
    epoch_s = max(window.end.timestamp_s - window.start.timestamp_s, 0.0)
    return live_figures(total_j, energy_between(end_j, start_j), epoch_s, config)


__all__ = ["LIVE_KEYS", "EpochEndMixin", "EpochResult", "EpochWindow", "live_figures"]
