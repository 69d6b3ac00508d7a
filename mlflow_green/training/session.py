"""The framework-free core of the training callbacks: one measured training, logged to MLflow.

Keras and Lightning callbacks are thin adapters that call a :class:`TrainingSession` at their
hooks. The session drives the tracker and the epoch steps; its parts each have one job:

- :mod:`~mlflow_green.training.session_run` — the run (where it is bound, every write, the flush
  and the end of a run we started: :meth:`TrainingSession.bind_run`, :meth:`TrainingSession.end_fit`);
- :mod:`~mlflow_green.training.phases` — the phase split (train, validation, data);
- :mod:`~mlflow_green.training.projection` — the projected energy of the planned epochs;
- :mod:`~mlflow_green.training.quality` — quality per kWh and FLOP/J;
- :mod:`~mlflow_green.training.fit_summary` — the tags and ``green/report.json``;
- :mod:`~mlflow_green.training.state` — what a checkpoint holds;
- :mod:`~mlflow_green.training.distributed` — the other ranks.

Example::

    session = TrainingSession(framework="keras", tracker=EnergyTracker())
    session.bind_run()
    session.begin_fit(planned_epochs=5, profile=profile)
    for epoch in range(5):
        session.begin_epoch(epoch)
        ...                                  # session.add_data_wait(seconds) from batch timings
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
from mlflow_green.training.figures import budget_reason, efficiency_metrics, projection_metrics, running_metrics
from mlflow_green.training.fit_summary import session_report, session_tags
from mlflow_green.training.inspection import ModelProfile
from mlflow_green.training.phases import EMPTY, FIT_PHASES, PhaseLedger
from mlflow_green.training.projection import EnergyProjection
from mlflow_green.training.quality import TRAINING_FLOPS_PER_FORWARD, quality_from_logs, resolve_quality_metric
from mlflow_green.training.session_run import SessionRun
from mlflow_green.training.state import STATE_VERSION, SessionState
from mlflow_green.training.steps import StepCounter
from mlflow_green.units import joules_to_kwh

__all__ = [
    "STATE_VERSION", "TRAINING_FLOPS_PER_FORWARD", "EpochResult", "TrainingSession", "resolve_quality_metric",
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


class TrainingSession:
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
        # across fits of one run
        self.carried = EMPTY
        self.ledger = PhaseLedger()
        self.samples: dict[str, int] = {}
        self.steps = StepCounter()
        self.evals = Evaluations()
        self.resumed_run_id: str | None = None
        # this fit
        self.tracker: EnergyTracker | None = None
        self.profile: ModelProfile | None = None
        self.quality: tuple[str, float] | None = None
        self.stop_reason: str | None = None
        self.epochs: list[dict[str, Any]] = []
        self.projection = EnergyProjection()
        self.fit_total: Measurement | None = None
        self._epoch_start: Snapshot | None = None
        self._last_total: Measurement | None = None
        self._first_epoch: int | None = None

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
        totals over.
        """
        if not self.dist.is_logging_rank:
            return
        if self.output.bind(run, **resolve):
            self.carried, self.samples, self.steps = EMPTY, {}, StepCounter()
            self.ledger.reset()
            self.evals.reset()

    # -- fit --------------------------------------------------------------------------------
    def begin_fit(self, *, planned_epochs: int, profile: ModelProfile | None = None) -> None:
        """Start measuring a fit that ends at epoch ``planned_epochs`` (exclusive)."""
        self.tracker = self.template.fresh()
        self.tracker.start()
        self.ledger.current = {}
        self.quality = None
        self.stop_reason = None
        self.epochs = []
        self.fit_total = None
        self.projection = EnergyProjection(planned_epochs)
        self._first_epoch = None
        self.profile = profile
        self._log_tags(self.tracker)

    def begin_epoch(self, epoch: int) -> None:
        """An epoch starts (the first one fixes the step numbering and logs the model profile)."""
        if self.tracker is None:
            return
        if self._first_epoch is None:
            self._first_epoch = int(epoch)
            self.projection.first_epoch = self._first_epoch
            self.steps.begin_fit(self._first_epoch)
            if self.profile is not None:
                self._log(self.profile.metrics(), self.steps.peek(self._first_epoch))
        self._epoch_start = self.tracker.snapshot()
        self.ledger.begin_epoch()

    def add_data_wait(self, seconds: float) -> None:
        """Time the training loop waited for its next batch (hot path: arithmetic only)."""
        self.ledger.data_wait_s += seconds

    def begin_phase(self, phase: str) -> None:
        """A measured phase starts (``validation`` inside a fit, ``test`` or ``predict``)."""
        if self.tracker is not None and self.tracker.running:
            self.tracker.begin(phase)

    def end_phase(self, phase: str, *, samples: int | None = None) -> Measurement:
        """A measured phase ends; returns its (local) measurement."""
        if self.tracker is None or not self.tracker.running:
            return EMPTY
        measurement = self.tracker.end(phase)
        if phase == "validation" and self._epoch_start is not None:
            self.ledger.add_validation(measurement)
        if samples:
            self.samples[phase] = self.samples.get(phase, 0) + int(samples)
        return measurement

    def end_epoch(self, epoch: int, *, logs: Mapping[str, Any] | None = None, train_samples: int | None = None) -> EpochResult:
        """An epoch ends: split it into phases, log running totals at step = epoch, check budgets."""
        if self.tracker is None or self._epoch_start is None:
            return EpochResult(EMPTY)
        now = self.tracker.snapshot()
        self.tracker.check_granularity(now - self._epoch_start, f"epoch {epoch}")  # too short for the counters?
        epoch_m = self.dist.reduce(now - self._epoch_start)
        split = self.ledger.end_epoch(epoch_m, validation=self.dist.reduce(self.ledger.epoch_validation))
        if train_samples:
            self.samples["train"] = self.samples.get("train", 0) + int(train_samples)
        self.projection.record_epoch(epoch_m.energy_j)
        self._epoch_start = None
        total = self.carried + self.dist.reduce(now - self.tracker.start_snapshot)
        self._last_total = total
        step = self.steps.step_for(epoch)
        self._update_quality(logs or {})
        metrics = self._running_metrics(total, window=epoch_m)
        metrics.update(projection_metrics(self.projection.projected_j(total.energy_j), self.config))
        self._log(metrics, step)
        self.epochs.append(
            {
                "epoch": int(epoch),
                "step": step,
                "duration_s": epoch_m.duration_s,
                "energy_j": epoch_m.energy_j,
                "phases_j": {phase: m.energy_j for phase, m in split.items()},
                "data_wait_s": self.ledger.data_wait_s,
                **({"quality": {self.quality[0]: self.quality[1]}} if self.quality else {}),
            }
        )
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

    def end_fit(self, status: str = "FINISHED", *, logs: Mapping[str, Any] | None = None, profile: ModelProfile | None = None) -> Measurement:
        """The fit ends (``FINISHED``, ``FAILED`` or ``KILLED``): log totals, tags and the report.

        This is where a fit's figures are final (the seam for signing them) and where the run
        is flushed and, if we started it, ended.
        """
        if self.tracker is None:
            return self.carried
        tracker, self.tracker = self.tracker, None
        try:
            self.fit_total = self.dist.reduce_fit_total(tracker.stop())
            total = self.carried + self.fit_total
            self._update_quality(logs or {})
            metrics = self._running_metrics(total, window=None)
            metrics.update(efficiency_metrics(self.profile, self.samples, total))
            if profile is not None and profile != self.profile:
                self.profile = profile
                metrics.update(profile.metrics())
            self._log(metrics, self.steps.current)
            self._log_tags(tracker, total)
            if self.log_report and self.dist.is_logging_rank:
                self.output.log_report(session_report(self, tracker, total, status))
            self.carried = total
            self.ledger.close_fit()
            return total
        except Exception as exc:  # measurement never crashes training
            logger.warning("mlflow-green: could not finish measuring the fit: %s", exc)
            return self.carried
        finally:
            self.output.close(status)

    def log_profile(self, profile: ModelProfile) -> None:
        """Log a model profile taken after training (post-training quantization or pruning)."""
        self.profile = profile
        self._log(profile.metrics(), self.steps.current)
        if self.dist.is_logging_rank:
            self.output.log_tags({schema.TAG_COMPRESSION: profile.compression_tag()})
            if self.tracker is None:  # outside a fit: the caller expects it in MLflow on return
                self.output.flush()

    # -- test / predict outside a fit --------------------------------------------------------
    @property
    def eval_in_progress(self) -> bool:
        """True between :meth:`begin_eval` and :meth:`end_eval` outside a fit."""
        return self.evals.in_progress

    def begin_eval(self, kind: str) -> None:
        """``model.evaluate`` / ``trainer.test`` (``test``) or ``predict`` starts."""
        if self.tracker is not None:  # inside a fit: measured as a phase
            self.begin_phase(kind)
            return
        self.evals.begin(kind, self.template)

    def end_eval(self, kind: str, *, samples: int | None = None) -> Measurement:
        """It ends: log ``green/energy_{kind}_kwh`` (running total) and joules per sample."""
        if self.tracker is not None:
            return self.end_phase(kind, samples=samples)
        if not self.evals.in_progress:
            return EMPTY
        measurement = self.evals.end(self.dist.reduce)
        metrics = {schema.phase_energy_key(kind): joules_to_kwh(self.evals.totals[kind].energy_j)}
        if samples:
            metrics[schema.phase_energy_per_sample_key(kind)] = measurement.energy_j / samples
        if not self.output.bound and self.dist.is_logging_rank:
            self.bind_run()
        self._log(metrics, self.steps.current)
        self.output.close("FINISHED")
        return measurement

    # -- resume ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold so that a resumed training continues the totals."""
        if self.tracker is None:
            total = self.carried
        elif not self.dist.distributed:  # exact: up to now
            total = self.carried + self.tracker.elapsed()
        else:  # no collective here (only some ranks save checkpoints): as of the last epoch end
            total = self._last_total if self._last_total is not None else self.carried
        return SessionState(self.run_id, total, self.ledger.totals(), dict(self.samples), self.last_step).to_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint's :meth:`state_dict`."""
        loaded = SessionState.from_dict(state)
        if loaded is None:
            return
        self.carried = loaded.total
        self.ledger.reset(loaded.phases)
        self.samples = dict(loaded.samples)
        self.steps = StepCounter(loaded.last_step)
        self.resumed_run_id = loaded.run_id

    # -- internals ---------------------------------------------------------------------------
    def report_phases(self) -> dict[str, Measurement]:
        """The phases ``report.json`` shows: the fit phases, those with samples, and evaluations."""
        phases = {p: m for p, m in self.ledger.totals().items() if p in FIT_PHASES or p in self.samples}
        phases.update(self.evals.totals)
        return phases

    def _update_quality(self, logs: Mapping[str, Any]) -> None:
        quality = quality_from_logs(self.quality_metric, logs)
        if quality is not None:
            self.quality = quality

    def _running_metrics(self, total: Measurement, *, window: Measurement | None) -> dict[str, float]:
        return running_metrics(
            total, self.config, window=window, train_samples=self.samples.get("train"),
            phases=self.ledger.fit_phase_totals(), quality=self.quality,
        )

    def _log(self, metrics: Mapping[str, float], step: int) -> None:
        if self.dist.is_logging_rank:
            self.output.log(metrics, step)

    def _log_tags(self, tracker: EnergyTracker, total: Measurement | None = None) -> None:
        if self.output.bound and self.dist.is_logging_rank:
            self.output.log_tags(session_tags(self, tracker, total))
