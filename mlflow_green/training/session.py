"""The framework-free core of the training callbacks: one measured training, logged to MLflow.

Keras, Lightning and Hugging Face callbacks are thin adapters that call a :class:`TrainingSession`
at their hooks. Its seams: :meth:`~TrainingSession.bind_run` (where the run is bound) and
:meth:`~TrainingSession.end_fit` (where a fit's figures are final and everything is flushed). Its
parts: ``session_run`` (the run and every write), ``session_profile`` (the model profile), ``phases``, ``projection``, ``steps``, ``figures``,
``quality``, ``fit_summary`` (tags, report), ``session_windows`` (epoch windows, phases),
``session_eval`` (evaluations), ``session_state``
(checkpoints, copies), ``distributed`` (ranks).

Example::

    session = TrainingSession(framework="keras", tracker=EnergyTracker())
    session.bind_run()
    session.begin_fit(planned_epochs=5)
    for epoch in range(5):
        session.begin_epoch(epoch)           # session.add_data_wait(seconds) from batch timings
        session.begin_phase("validation"); ...; session.end_phase("validation", samples=n_val)
        result = session.end_epoch(epoch, logs={"val_accuracy": 0.9}, train_samples=n_train)
    session.end_fit("FINISHED")
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow_green.measure.readings import Measurement, Snapshot
from mlflow_green.measure.tracker import EnergyTracker
from mlflow_green.record import schema
from mlflow_green.record.runs import RunHandle
from mlflow_green.record.timeouts import RunTimeouts
from mlflow_green.training.budget import EnergyBudget
from mlflow_green.training.callback_options import session_options
from mlflow_green.training.distributed import DistributedContext
from mlflow_green.training.evaluation import Evaluations
from mlflow_green.training.figures import budget_reason, projection_metrics, running_metrics
from mlflow_green.training.fit_summary import session_tags
from mlflow_green.training.inspection import ModelProfile
from mlflow_green.training.phases import EMPTY, PhaseLedger
from mlflow_green.training.projection import EnergyProjection
from mlflow_green.training.quality import TRAINING_FLOPS_PER_FORWARD, quality_from_logs, resolve_quality_metric
from mlflow_green.training.session_end import FitEndMixin
from mlflow_green.training.session_eval import EvaluationMixin
from mlflow_green.training.session_profile import ProfileMixin
from mlflow_green.training.session_run import SessionRun
from mlflow_green.training.session_state import StateMixin
from mlflow_green.training.session_windows import EPOCH_GAP_S, WindowsMixin
from mlflow_green.training.state import STATE_VERSION
from mlflow_green.training.steps import StepCounter

__all__ = [
    "EPOCH_GAP_S", "STATE_VERSION", "TRAINING_FLOPS_PER_FORWARD", "EpochResult", "TrainingSession", "resolve_quality_metric",
]

logger = logging.getLogger(__name__)


@dataclass
class EpochResult:
    """What one epoch measured, for the adapter.

    Attributes:
        measurement: The epoch window (all ranks).
        live: The few figures to show in the progress bar (schema keys).
        stop_reason: Non-empty when a budget says training must stop.
    """

    measurement: Measurement
    live: dict[str, float] = field(default_factory=dict)
    stop_reason: str | None = None


class TrainingSession(WindowsMixin, FitEndMixin, EvaluationMixin, StateMixin, ProfileMixin):
    """One callback's measurements across fits (and test/predict calls), logged to MLflow.

    Args:
        framework: ``keras`` or ``lightning`` (for the report).
        tracker: A configured, unstarted tracker; a fresh copy is started for each fit.
        quality_metric: The metric for ``green/accuracy_per_kwh``; None picks one (see
            :func:`~mlflow_green.training.quality.resolve_quality_metric`).
        budget: Energy / emissions limits; training stops before exceeding them.
        log_report: Write ``green/report.json`` at the end of each fit.
        run_name: Name of the run started when there is no active run.
        timeouts: Bounds on waiting for MLflow at the start and the end of a fit.
    """

    def __init__(
        self,
        *,
        framework: str,
        tracker: EnergyTracker,
        quality_metric: str | None = None,
        budget: EnergyBudget | None = None,
        log_report: bool = True,
        run_name: str | None = None,
        timeouts: RunTimeouts | None = None,
    ) -> None:
        self.framework = framework
        self.template = tracker
        self.config = tracker.config
        self.quality_metric = quality_metric
        self.budget = budget or EnergyBudget()
        self.log_report = log_report
        self.dist = DistributedContext()  # the adapter fills it in distributed training
        self.output = SessionRun(run_name, timeouts)
        self.resumed_run_id: str | None = None  # from a checkpoint, until a run is bound
        self.resumed_from: str | None = None  # the earlier run, when this run starts over
        self._start_run_totals()
        # this fit
        self.tracker: EnergyTracker | None = None
        self.profile: ModelProfile | None = None
        self.quality: tuple[str, float] | None = None
        self.stop_reason: str | None = None
        self.epochs: list[dict[str, Any]] = []
        self.projection = EnergyProjection()
        self.fit_total: Measurement | None = None
        self._epoch_start: Snapshot | None = None
        self._epoch: int | None = None  # the epoch in progress
        self._last_total: Measurement | None = None
        self._first_epoch: int | None = None
        self._counts: dict[str, int] = {}  # samples seen on this rank since the last exchange
        self._steps_done = 0
        self._validation_end: Snapshot | None = None  # the epoch may end there (EPOCH_GAP_S)
        self._last_epoch_end: Snapshot | None = None  # the next epoch may start there (EPOCH_GAP_S)
        self._last_epoch_end_s = 0.0  # when that epoch's end was settled (tracker clock)

    def _start_run_totals(self) -> None:
        """A new run: every running total starts at zero."""
        self.carried = EMPTY
        self.ledger = PhaseLedger()
        self.samples: dict[str, int] = {}
        self.steps = StepCounter()
        self.evals = Evaluations()
        self.report: dict[str, Any] | None = None

    @classmethod
    def for_callback(cls, framework: str, **options: Any) -> TrainingSession:
        """Validate a callback's options (``ConfigError`` at construction) and build its session.

        See :func:`~mlflow_green.training.callback_options.session_options` for the options.
        """
        return cls(framework=framework, **session_options(**options))

    # -- run (seam: where the run is bound) ------------------------------------------------------
    @property
    def run_id(self) -> str | None:
        """The run the session logs (or last logged) into."""
        return self.output.run_id

    @property
    def last_step(self) -> int | None:
        """The last step logged into the run (None before the first epoch)."""
        return self.steps.last_step

    def bind_run(self, run: RunHandle | None = None, **resolve: Any) -> None:
        """Log into ``run``, else resolve one (explicit id, active run, or a new one).

        Only the logging rank binds a run. A different run from the previous one starts the
        totals over; so does a run other than the one a resumed checkpoint was logged into
        (tagged ``green.resumed_from``).
        """
        if not self.dist.is_logging_rank:
            return
        if self.output.bind(run, **resolve):
            self._start_run_totals()
        resumed, self.resumed_run_id = self.resumed_run_id, None
        if resumed and self.output.bound and resumed != self.output.run_id:
            self._start_run_totals()
            self.resumed_from = resumed
            self.output.log_tags({schema.TAG_RESUMED_FROM: resumed})

    # -- fit --------------------------------------------------------------------------------
    def begin_fit(self, *, planned_epochs: int, planned_steps: int | None = None, steps_done: int = 0,
                  profile: ModelProfile | None = None) -> None:
        """Start measuring a fit that ends at epoch ``planned_epochs`` (exclusive) or step ``planned_steps``."""
        self.tracker = self.template.fresh()
        self.tracker.start()
        if self.dist.distributed:
            self._agree_with_rank_zero()
        self.ledger.current = {}
        self.quality, self.stop_reason, self.fit_total = None, None, None
        self.epochs = []
        self.projection = EnergyProjection(planned_epochs, planned_steps)
        self._first_epoch = self._epoch = self._last_epoch_end = self._validation_end = None
        self._counts = {}
        self._steps_done = int(steps_done or 0)
        self.profile = profile

    def begin_epoch(self, epoch: int) -> None:
        """An epoch starts (the previous epoch's point is sent; the first fixes the step numbering)."""
        if self.tracker is None:
            return
        self.output.send_pending()
        if self._first_epoch is None:
            self._first_epoch = int(epoch)
            self.projection.first_epoch = self._first_epoch
            self.steps.begin_fit(self._first_epoch)
            self._log_tags(self.tracker, background=True)  # handed over: no spool write on the hook's path
            if self.profile is not None:
                self._log_model(self.profile, self.steps.peek(self._first_epoch), at_epoch_start=True)
        self._epoch = int(epoch)
        self._start_epoch_window()

    def add_data_wait(self, seconds: float) -> None:
        """Time the training loop waited for its next batch (hot path: arithmetic only)."""
        self.ledger.data_wait_s += seconds

    def end_epoch(self, epoch: int, *, logs: Mapping[str, Any] | None = None, train_samples: int | None = None,
                  steps_done: int | None = None) -> EpochResult:
        """An epoch ends: split it into phases, log running totals at step = epoch, check budgets.

        ``train_samples`` are this rank's; ``steps_done`` counts optimizer steps since training began.
        """
        if self.tracker is None or self._epoch_start is None:
            return EpochResult(EMPTY)
        now, after_validation = self._end_epoch_window()
        self.tracker.check_granularity(now - self._epoch_start, f"epoch {epoch}")  # too short for the counters?
        self.count("train", train_samples)
        local = {"epoch": now - self._epoch_start, "validation": self.ledger.epoch_validation,
                 "after_validation": after_validation, "total": now - self.tracker.start_snapshot}
        measured, counts = self.dist.combine(local, self._take_counts())
        self._add_samples(counts)
        epoch_m = measured["epoch"]
        split = self.ledger.end_epoch(epoch_m, validation=measured["validation"], after=measured["after_validation"])
        epoch_steps = None if steps_done is None else int(steps_done) - self._steps_done
        self._steps_done = self._steps_done if steps_done is None else int(steps_done)
        self.projection.record_epoch(epoch_m.energy_j, steps=epoch_steps, steps_done=steps_done)
        self._epoch_start = self._epoch = None
        self._last_epoch_end = now
        total = self._last_total = self.carried + measured["total"]
        step = self.steps.step_for(epoch)
        self._update_quality(logs or {})
        metrics = self._running_metrics(total, window=epoch_m)
        metrics.update(projection_metrics(self.projection.projected_j(total.energy_j), self.config))
        self._log(metrics, step)
        self.epochs.append({
            "epoch": int(epoch), "step": step, "duration_s": epoch_m.duration_s, "energy_j": epoch_m.energy_j,
            "phases_j": {phase: m.energy_j for phase, m in split.items()}, "data_wait_s": self.ledger.data_wait_s,
            **({"steps": epoch_steps} if epoch_steps is not None else {}),
            **({"quality": {self.quality[0]: self.quality[1]}} if self.quality else {}),
        })
        live = {key: metrics[key] for key in (schema.ENERGY_KWH, schema.EMISSIONS_KG, schema.POWER_W) if key in metrics}
        reason = budget_reason(self.budget, self.config, total, next_epoch_j=self.projection.mean_epoch_j())
        if reason:
            self.stop_reason = reason
        return EpochResult(epoch_m, live, reason)

    def check_budget(self) -> str | None:
        """Mid-epoch budget check on the energy used so far (local to this rank)."""
        if not self.budget.active or self.tracker is None or not self.tracker.running:
            return None
        reason = budget_reason(self.budget, self.config, self.carried + self.tracker.elapsed(), next_epoch_j=None)
        if reason:
            self.stop_reason = reason
        return reason

    @property
    def fitting(self) -> bool:
        """True between :meth:`begin_fit` and :meth:`end_fit`."""
        return self.tracker is not None

    # -- internals ---------------------------------------------------------------------------
    def _take_counts(self) -> dict[str, int]:
        counts, self._counts = self._counts, {}
        return counts

    def _add_samples(self, counts: Mapping[str, int]) -> None:
        for phase, n in counts.items():
            if n:
                self.samples[phase] = self.samples.get(phase, 0) + int(n)

    def _update_quality(self, logs: Mapping[str, Any]) -> None:
        quality = quality_from_logs(self.quality_metric, logs)
        if quality is not None:
            self.quality = quality

    def _running_metrics(self, total: Measurement, *, window: Measurement | None) -> dict[str, float]:
        return running_metrics(
            total, self.config, window=window, train_samples=self.samples.get("train"),
            phases=self.ledger.with_other(total), quality=self.quality,
        )

    def _log(self, metrics: Mapping[str, float], step: int) -> None:
        if self.dist.is_logging_rank:
            self.output.log(metrics, step)

    def _log_tags(self, tracker: EnergyTracker, total: Measurement | None = None, *, background: bool = False) -> None:
        if self.output.bound and self.dist.is_logging_rank:
            self.output.log_tags(session_tags(self, tracker, total), background=background)
