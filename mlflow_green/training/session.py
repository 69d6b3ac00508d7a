"""The framework-free core of the training callbacks: one measured training, logged to MLflow.

Keras, Lightning and Hugging Face callbacks are thin adapters that call a :class:`TrainingSession`
at their hooks. Its seams: :meth:`~TrainingSession.bind_run` (where the run is bound) and
:meth:`~TrainingSession.end_fit` (where a fit's figures are final and everything is flushed). Its
parts: ``session_run`` (the run, its writes), ``session_profile``, ``phases``, ``projection``, ``steps``, ``figures``, ``quality``,
``run_flops``, ``fit_summary`` (tags, report), ``session_windows``, ``session_eval``, ``session_state``, ``distributed``.

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
from typing import Any

from mlflow_green.measure.readings import Measurement, Snapshot
from mlflow_green.measure.tracker import EnergyTracker
from mlflow_green.record import schema
from mlflow_green.record.bounded_read import read_within
from mlflow_green.record.runs import RunHandle
from mlflow_green.record.timeouts import RunTimeouts
from mlflow_green.training.budget import EnergyBudget
from mlflow_green.training.callback_options import session_options
from mlflow_green.training.deferred import DeferredWork
from mlflow_green.training.distributed import DistributedContext
from mlflow_green.training.evaluation import Evaluations
from mlflow_green.training.figures import budget_reason, running_metrics
from mlflow_green.training.fit_summary import session_tags
from mlflow_green.training.home_run import HomeRun
from mlflow_green.training.inspection import ModelProfile
from mlflow_green.training.phases import EMPTY, PhaseLedger
from mlflow_green.training.projection import EnergyProjection
from mlflow_green.training.quality import TRAINING_FLOPS_PER_FORWARD, quality_from_logs, resolve_quality_metric
from mlflow_green.training.run_flops import RunFlops
from mlflow_green.training.run_history import created_run_id
from mlflow_green.training.session_end import FitEndMixin
from mlflow_green.training.session_epochs import EpochEndMixin, EpochResult
from mlflow_green.training.session_eval import EvaluationMixin, active_run_id
from mlflow_green.training.session_profile import ProfileMixin
from mlflow_green.training.session_run import SessionRun
from mlflow_green.training.session_state import StateMixin
from mlflow_green.training.session_windows import EPOCH_GAP_S, WindowsMixin
from mlflow_green.training.shared_evaluations import new_writer
from mlflow_green.training.state import STATE_VERSION
from mlflow_green.training.steps import StepCounter

__all__ = ["EPOCH_GAP_S", "STATE_VERSION", "TRAINING_FLOPS_PER_FORWARD", "EpochResult", "TrainingSession", "resolve_quality_metric"]

logger = logging.getLogger(__name__)


class TrainingSession(WindowsMixin, EpochEndMixin, FitEndMixin, EvaluationMixin, StateMixin, ProfileMixin):
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

    expects_validation = False  # set by the callback at each fit: quality then from validation metrics only

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
        self.log_report, self.dist = log_report, DistributedContext()  # dist: the adapter fills it in distributed training
        self.output = SessionRun(run_name, timeouts)
        self._deferred = DeferredWork()  # epochs accounted for off the training thread (session_epochs)
        self.active_at_bind: str | None = None  # MLflow's active run as the run was last bound (see session_eval)
        self.resumed_run_id: str | None = None  # from a checkpoint, until a run is bound
        self.resumed_pending_run: dict[str, str | None] | None = None  # a checkpoint's run not created when written
        self.resumed_from: str | None = None  # the earlier run, when this run starts over
        self._home: HomeRun | None = None  # the fit's run while evaluations log into a later run (session_eval)
        self._writer = new_writer()  # tells its evaluation totals from other sessions' in a shared run (session_eval)
        self._start_run_totals()
        # this fit
        self.tracker: EnergyTracker | None = None
        self.profile: ModelProfile | None = None
        self._quality: tuple[str, float] | None = None
        self.stop_reason: str | None = None
        self._epochs: list[dict[str, Any]] = []
        self._projection = EnergyProjection()
        self.fit_total: Measurement | None = None
        self._epoch_start: Snapshot | None = None
        self._epoch: int | None = None  # the epoch in progress
        self._epochs_begun = 0  # epochs begun so far (an epoch's accounting tells whether the next one began)
        self._last_total: Measurement | None = None
        self._gathered: tuple[Measurement, Snapshot] | None = None  # every rank's fit total at the last epoch end, and its reading
        self._first_epoch: int | None = None
        self._counts: dict[str, int] = {}  # samples seen on this rank since the last exchange
        self._steps_done = 0
        self._work_end: Snapshot | None = None  # the reading that ended the epoch's training or last validation: its end may reuse it (EPOCH_GAP_S)
        self._last_epoch_end: Snapshot | None = None  # the next epoch may start there (EPOCH_GAP_S)
        self._last_epoch_end_s = 0.0  # when that epoch's end was settled (tracker clock)

    def _start_run_totals(self) -> None:
        """A new run: every running total starts at zero."""
        self.carried = EMPTY
        self._ledger = PhaseLedger()
        self.samples: dict[str, int] = {}
        self.flops = RunFlops()  # the FLOPs of the run's fits, each at its own model's
        self.steps = StepCounter()
        self.evals = Evaluations()
        self.report: dict[str, Any] | None = None

    @classmethod
    def for_callback(cls, framework: str, **options: Any) -> TrainingSession:
        """Validate a callback's options (``ConfigError`` at construction: see
        :func:`~mlflow_green.training.callback_options.session_options`) and build its session."""
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

    def bind_run(self, run: RunHandle | None = None, *, activate: bool = True, **resolve: Any) -> None:
        """Log into ``run``, else resolve one (explicit id, active run, or a new one).

        Only the logging rank binds a run. A different run from the previous one starts the totals over;
        so does a run other than the one a resumed checkpoint was logged into (tagged ``green.resumed_from``).
        """
        if not self.dist.is_logging_rank:
            return
        self._deferred.settle()
        self._home = None  # the run bound now is the one to come back to
        self.active_at_bind = active_run_id()  # the user's run (or a block's) beside which this one may be bound
        fresh = self.steps.last_step is None and self.resumed_run_id is None and self.resumed_pending_run is None  # nothing logged, nothing loaded
        previous = self.output.run_id  # a run this session logged into (an evaluation) holds nothing new for it
        if self.output.bind(run, activate=activate, **resolve):
            self._start_run_totals()
            fresh = True
        resumed, self.resumed_run_id = self.resumed_run_id, None
        pending, self.resumed_pending_run = self.resumed_pending_run, None
        if pending is not None and self.output.bound:  # the checkpoint's run was not created when it was written
            resumed = self._created_run_id(pending)
            if resumed is None:  # its run cannot be told: another run's totals, not this one's
                self._start_run_totals()
                fresh = True
        if resumed and self.output.bound and resumed != self.output.run_id:
            self._start_run_totals()
            fresh = True  # a checkpoint of another run: this run's own earlier fits, if any, go on
            self.resumed_from = resumed
            self.output.log_tags({schema.TAG_RESUMED_FROM: resumed})
        elif resumed and self.output.run is not None and resumed == self.output.run_id:  # its own run: did it go on?
            self._continue_earlier_fits(self.output.run, resumed, after_step=-1 if self.last_step is None else self.last_step,
                                        own=previous == resumed)
        if fresh and self.output.run is not None and not self.output.owned and self.output.run_id not in (None, previous):
            self._continue_earlier_fits(self.output.run, self.output.run_id)
        elif not fresh and self.output.run is not None and not self.output.owned and self.output.run_id == previous:
            self._continue_earlier_fits(self.output.run, previous, after_step=self.last_step, own=True)  # others' fits since?

    def _created_run_id(self: TrainingSession, pending_run: dict[str, str | None]) -> str | None:
        """The run a checkpoint written before its run's creation belongs to, found by its creation token
        (waited for at most the start timeout; None if it cannot be found)."""
        handle = self.output.run
        found = None if handle is None else read_within(
            lambda: created_run_id(lambda: handle.client, pending_run), (handle.timeouts or RunTimeouts.resolve()).start_for(handle.tracking_uri),
            what="the checkpoint's run", consequence="the resumed totals start at zero")
        if found is None:
            logger.warning("mlflow-green: the checkpoint (or backup) was written before its MLflow run was created, and that run "
                           "cannot be found now: not tagged %s (a resumed checkpoint's totals start at zero)", schema.TAG_RESUMED_FROM)
        return found

    def note_resumed_from(self, run: str | dict[str, str | None] | None) -> None:
        """This fit resumes one that logged into ``run`` (a framework's backup restored it; a dict: the backup's
        ``pending_run``, written before that run was created): tag the run ``green.resumed_from`` if it is another."""
        run_id = self._created_run_id(run) if isinstance(run, dict) and self.output.bound else run
        if isinstance(run_id, str) and run_id and self.output.bound and run_id != self.output.run_id and self.resumed_from != run_id:
            self.resumed_from = run_id
            self.output.log_tags({schema.TAG_RESUMED_FROM: run_id})

    # -- fit --------------------------------------------------------------------------------
    def begin_fit(self, *, planned_epochs: int, planned_steps: int | None = None, steps_done: int = 0,
                  profile: ModelProfile | None = None, tracker: EnergyTracker | None = None) -> None:
        """Start measuring a fit that ends at epoch ``planned_epochs`` (exclusive) or step ``planned_steps``
        (``tracker``: one of the template's started earlier, at the framework's setup)."""
        self._deferred.settle()
        self.tracker = tracker if tracker is not None and tracker.running else self.template.fresh()
        if not self.tracker.running:
            self.tracker.start()
        self._deferred.start()  # its thread now, not at the first epoch's end
        self._deferred.after = self.output.send_gathered  # the steps sent on one wake-up: one spool line
        self.output.in_call, self.dist.gathered_at_end = True, True  # a call inside it gets a child run (until close)
        if self.dist.distributed:
            self._agree_with_rank_zero()
        self._ledger.current = {}
        self._quality, self.stop_reason, self.fit_total = None, None, None
        self._epochs = []
        self._projection = EnergyProjection(planned_epochs, planned_steps)
        self._first_epoch = self._epoch = self._last_epoch_end = self._work_end = self._gathered = None
        self._counts = {}
        self.flops.begin_fit(self.samples)
        self._steps_done = int(steps_done or 0)
        self.profile = profile

    def restore_steps(self, steps_done: int) -> None:
        """The framework restored its optimizer-step count after the fit began (Lightning restores a
        checkpoint's ``global_step`` after ``on_fit_start``): the next epoch's steps count from there."""
        if self._first_epoch is None:
            self._steps_done = int(steps_done or 0)

    def begin_epoch(self, epoch: int) -> None:
        """An epoch starts (the previous epoch's point is sent; the first fixes the step numbering)."""
        tracker = self.tracker
        if tracker is None:
            return
        self._deferred.submit(lambda: self.output.send_pending(background=False, gather=True))  # after the previous epoch's accounting
        self._epochs_begun += 1  # after the hand-over: an accounting that sees it has the send queued behind it
        if self._first_epoch is None:
            self.output.activate()  # the run it started, bound with activate=False (see SessionRun.bind)
            self._first_epoch = self._projection.first_epoch = int(epoch)
            self.steps.begin_fit(self._first_epoch)
            self._deferred.submit(lambda: self._log_tags(tracker))  # spooled by the epochs' thread
            if self.profile is not None:
                profile, step = self.profile, self.steps.peek(self._first_epoch)
                self._deferred.submit(lambda: self._log_model(profile, step, at_epoch_start=True))
        self._epoch = int(epoch)
        self._start_epoch_window()

    def add_data_wait(self, seconds: float) -> None:
        """Time the training loop waited for its next batch (hot path: arithmetic only)."""
        self._ledger.data_wait_s += seconds

    def check_budget(self) -> str | None:
        """Mid-epoch budget check on the energy used so far (local to this rank)."""
        if not self.budget.active or self.tracker is None or not self.tracker.running:
            return None
        reason = budget_reason(self.budget, self.config, self.carried + self.tracker.elapsed(), next_epoch_j=None)
        if reason:
            self.stop_reason = reason
        return reason

    # -- what the epochs handed over produce (read after they are accounted for) ----------------
    @property
    def ledger(self) -> PhaseLedger:
        """The run's phase totals (every epoch ended so far accounted for)."""
        self._deferred.settle()
        return self._ledger

    @property
    def projection(self) -> EnergyProjection:
        """The fit's energy projection (every epoch ended so far accounted for)."""
        self._deferred.settle()
        return self._projection

    @property
    def epochs(self) -> list[dict[str, Any]]:
        """The fit's epochs as ``report.json`` lists them (every epoch ended so far accounted for)."""
        self._deferred.settle()
        return self._epochs

    @property
    def quality(self) -> tuple[str, float] | None:
        """The quality metric's name and latest value (every epoch ended so far accounted for)."""
        self._deferred.settle()
        return self._quality

    def settle(self) -> None:
        """Finish the accounting of the epochs ended so far (done in the background otherwise)."""
        self._deferred.settle()

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
        quality = quality_from_logs(self.quality_metric, logs, validated=self.expects_validation)
        if quality is not None:
            self._quality = quality

    def _running_metrics(self, total: Measurement, *, window: Measurement | None) -> dict[str, float]:
        return running_metrics(
            total, self.config, window=window, train_samples=self.samples.get("train"),
            phases_j=self.ledger.energy_with_other_j(total), quality=self.quality,
        )

    def _log(self, metrics: Mapping[str, float], step: int, *, hold: bool = True) -> None:
        if self.dist.is_logging_rank:  # the epochs' thread spools them itself; the training thread hands them over
            self.output.log(metrics, step, hold=hold, background=not self._deferred.in_job())

    def _log_tags(self, tracker: EnergyTracker, total: Measurement | None = None, *, background: bool = False) -> None:
        if self.output.bound and self.dist.is_logging_rank:
            self.output.log_tags(session_tags(self, tracker, total), background=background)
