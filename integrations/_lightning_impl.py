"""The Lightning callback's implementation, shared by ``lightning.pytorch`` and ``pytorch_lightning``.

Lightning checks callbacks with ``isinstance`` against its own package's ``Callback``, so each
package gets its own class built from :class:`GreenCallbackMixin` by :func:`make_callback_class`.
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from mlflow_green.integrations._lightning_batch_hooks import STEPPED_OUT, BatchHooksMixin
from mlflow_green.integrations._lightning_call_watch import CallWatch, stopped
from mlflow_green.integrations._lightning_epoch_end import EpochEndReading
from mlflow_green.integrations._lightning_evals import EvaluationHooksMixin
from mlflow_green.integrations._lightning_fetch import FetchTimer
from mlflow_green.integrations._lightning_guard import EarlierCallbacksGuard, StrategyGuard
from mlflow_green.integrations._lightning_idle_hooks import leave_idle_hooks
from mlflow_green.integrations._lightning_profile import ProfileMixin
from mlflow_green.integrations._lightning_sigterm import SigtermBesideLightning, SigtermHooksMixin
from mlflow_green.integrations._lightning_trainer import (
    RootDevice,
    bind_trainer_run,
    busy_in_another_thread,
    end_unbegun_fit,
    ends_the_epoch,
    sanity_checking,
    show_in_progress_bar,
    started_tracker,
    stop_unused,
)
from mlflow_green.integrations._mlflow_autolog import mlflow_autologging_on
from mlflow_green.integrations._torch_batches import batch_size, epoch_metrics, floats, same_batch, training_batches
from mlflow_green.integrations._torch_distributed import bind_device, distributed_context
from mlflow_green.measure.tracker import MeterSpec
from mlflow_green.training.session import TrainingSession
from mlflow_green.training.signal_holds import signals_held, sigterm_held
from mlflow_green.training.spawn_return import CarriesSession

logger = logging.getLogger(__name__)

class GreenCallbackMixin(BatchHooksMixin, EvaluationHooksMixin, ProfileMixin, SigtermHooksMixin, CarriesSession):
    """Logs energy, emissions and compression metadata of a Lightning training into MLflow.

    See :class:`mlflow_green.integrations.lightning.GreenCallback` for the behaviour and options.
    """

    def __init__(
        self,
        *,
        quality_metric: str | None = None,
        max_energy_kwh: float | None = None,
        max_emissions_kg: float | None = None,
        live_metrics: bool | None = None,
        inspect_model: bool = True,
        log_report: bool = True,
        run_name: str | None = None,
        region: str | None = None,
        pue: float | None = None,
        meters: str | Sequence[MeterSpec] | None = None,
        sample_interval_s: float | None = None,
        intensity_provider: str | None = None,
        scope: str | None = None,
        start_timeout_s: float | None = None,
        end_timeout_s: float | None = None,
    ) -> None:
        super().__init__()
        self.session = TrainingSession.for_callback(
            "lightning", quality_metric=quality_metric, max_energy_kwh=max_energy_kwh,
            max_emissions_kg=max_emissions_kg, live_metrics=live_metrics, inspect_model=inspect_model,
            log_report=log_report, run_name=run_name, region=region, pue=pue, meters=meters,
            sample_interval_s=sample_interval_s, intensity_provider=intensity_provider, scope=scope,
            start_timeout_s=start_timeout_s, end_timeout_s=end_timeout_s,
        )
        self.live_metrics, self.inspect_model = live_metrics, inspect_model
        self._live = True
        self._fitting = False
        self._pending_state: Mapping[str, Any] | None = None
        self._call: str | None = None  # the fit in progress, from its setup (a tuner's checkpoint inside it)
        self._needs_profile = False
        self._example: Any = None
        self._flop_cache: dict[str, Any] = {}
        self._last_batch_end_s = self._last_budget_check_s = 0.0
        self._budget_per_batch = False  # a budget checked after batches (set as the fit starts)
        self._epoch_samples = self._eval_samples = 0
        self._fetch: FetchTimer | None = None  # the fit's input wait: the time inside its training loop's fetches
        self._epoch_end: EpochEndReading | None = None  # the fit loop's epoch end, wrapped for the fit
        self._in_epoch = False  # between our on_train_epoch_start and on_train_epoch_end
        self._at_exit_registered = False
        self._guard = EarlierCallbacksGuard()  # our on_exception runs even if an earlier callback's raises
        self._strategy_guard, self._exception_seen = StrategyGuard(), 0  # or if a tuner's trial took our place
        self._early: Any = None  # the fit's tracker, started at setup (see setup)
        self._thread = 0  # the thread of the call measured last (another's call at once: this one stands aside)
        self._watch: CallWatch | None = None  # a call outside the main thread: it can end with no hook (_lightning_call_watch)
        self._sigterm: SigtermBesideLightning | None = None  # SIGTERM outside Lightning's own stretch of a fit
        self._term_call: tuple[Any, Any] | None = None  # the fit's (trainer, module), for it
        self._sizes, self._profiled = batch_size, same_batch  # a training batch's samples, its part profiled
        leave_idle_hooks(self, getattr(type(self), "_callback_base", None))  # Lightning skips them at every batch

    # -- fit ---------------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """A fit's measurement starts here: the module's ``setup``, ``configure_model``, the strategy's and a checkpoint's
        restore are its ``other`` (``prepare_data``, the DataModule's ``setup`` and DDP's start come before: docs/lightning.md)."""
        if busy_in_another_thread(self, trainer):
            return
        self._watch = CallWatch.start(self, trainer, pl_module, stage, previous=self._watch)  # the last call's end first
        self._thread = threading.get_ident()
        self._early = stop_unused(self._early)
        if stage == "fit":
            self._call = uuid.uuid4().hex  # this fit's, in the states saved before its on_fit_start
            self._setup_distributed(trainer)
            self._early = started_tracker(self.session.template)
            self._take_sigterm(trainer, pl_module)
            self._strategy_guard.guard(trainer, self)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._batch_hooks_back()  # called at the fit's first batch (a fit ended unseen left it out)
        self._setup_distributed(trainer)
        if self._pending_state is not None:
            self.session.load_state_dict(self._pending_state)
            self._pending_state = None
        with signals_held(not self.session.dist.distributed, at_once=True):  # a Ctrl-C or SIGTERM while MLflow creates
            # the run: once measuring began (KILLED with its figures, in one run; a second one at once), SIGTERM by the watch
            # taken at setup, here — delivered again later, it met Lightning's handler, registered after on_fit_start
            bind_trainer_run(self.session, trainer)
            self._guard.guard(trainer, self)
            self._fetch = FetchTimer.install(trainer)  # None on a Lightning without its hooks: the gaps between batches
            if self._fetch is not None:  # a training_step reading a dataloader_iter: the batches it pulls counted
                self._fetch.on_pass = self._count_pulled_training
            self._epoch_end = EpochEndReading.install(trainer, self)  # a reading before the callbacks' epoch ends
            self.session.expects_validation = bool(getattr(trainer, "enable_validation", False))  # quality: val metrics
            self._live = self.live_metrics if self.live_metrics is not None else not mlflow_autologging_on("pytorch")
            max_epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else 0
            max_steps = trainer.max_steps if trainer.max_steps is not None and trainer.max_steps > 0 else None
            early, self._early = self._early, None
            self.session.begin_fit(planned_epochs=max_epochs, planned_steps=max_steps, steps_done=trainer.global_step, tracker=early)
            self._fitting, self._in_epoch = True, False
        self._example = getattr(pl_module, "example_input_array", None)
        self._needs_profile = self.inspect_model and self._example is None  # inspected on the first batch
        if self.inspect_model and self._example is not None:
            self._log_profile(trainer, pl_module)
        self._last_budget_check_s = time.perf_counter()  # ranks must agree: in DDP budgets are checked at epoch end
        self._budget_per_batch = self.session.budget.active and self.session.dist.world_size == 1
        if not self._at_exit_registered:
            atexit.register(self._finish_at_exit)
            self._at_exit_registered = True

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._sizes, self._profiled = training_batches(trainer)  # a CombinedLoader's batches: several loaders' in one
        if self._fitting:  # a checkpoint's global_step is restored after on_fit_start, before this
            self.session.restore_steps(trainer.global_step)
            self.session.replan(trainer.max_epochs)  # as every on_fit_start left it (SWA adds an epoch)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.session.begin_epoch(trainer.current_epoch)
        self._in_epoch = True
        self._epoch_samples, self._train_counting = 0, self._train_counted is not None
        if self._train_counted is not None:  # from the totals now: the loop's own epoch counters are not reset yet
            self._train_counted.begin()
        self._last_batch_end_s = time.perf_counter()

    def _resumed_inside_an_epoch(self, trainer: Any) -> None:
        """A resumed mid-epoch checkpoint gets no ``on_train_epoch_start``: its epoch begins at its first batch (or validation)."""
        if self._fitting and not sanity_checking(trainer):
            self.on_train_epoch_start(trainer, None)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._eval_samples = 0
        if sanity_checking(trainer):
            return
        if self._fitting and not self._in_epoch:  # resumed right before the epoch's validation
            self._resumed_inside_an_epoch(trainer)
        self._count_validation(trainer)
        if self._fitting:
            self.session.begin_phase("validation")
        else:  # trainer.validate
            self._begin_eval(trainer, "validate")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if sanity_checking(trainer):
            return
        self._fold_validation()
        if self._fitting:  # after the epoch's last batch, no training follows it in this epoch
            self.session.end_phase("validation", samples=self._eval_samples, ends_epoch=ends_the_epoch(trainer))
            self._last_batch_end_s = time.perf_counter()  # validation within the epoch is not data wait
        else:
            self.session.end_eval("validate", samples=self._eval_samples)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._fold_training(trainer)
        session = self.session
        if self._fetch is not None:  # fetched inside the last step (a training_step reading a dataloader_iter)
            session.add_data_wait(self._fetch.take_s())
        result = session.end_epoch(  # CPU tensors read by the epoch's accounting (only the quality metric's)
            trainer.current_epoch, logs=epoch_metrics(trainer.callback_metrics), train_samples=self._epoch_samples,
            steps_done=trainer.global_step,
        )
        self._epoch_samples = 0
        self._in_epoch = False
        if self._live and getattr(trainer, "progress_bar_callback", None) is not None:
            # Written as the CLI and the view write them ("86.1 mWh", not 8.61e-05 or 0.000), straight
            # into the bar's figures: never into callback_metrics, so no logger logs them twice.
            show_in_progress_bar(trainer, result.live)
        if result.stop_reason:
            logger.warning("mlflow-green: stopping training: %s", result.stop_reason)
            trainer.should_stop = True

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._exception_seen = id(exception)  # (the strategy's hook then knows it reached us)
        self._let_go()  # KeyboardInterrupt, and Lightning's SIGTERMException (a SystemExit): the run was killed
        status = "KILLED" if isinstance(exception, (KeyboardInterrupt, SystemExit)) else "FAILED"
        if not self._fitting:  # ended after our setup, before on_fit_start: a run for what was measured since
            resumed, self._pending_state, self._call = self._pending_state, None, None  # no teardown follows: the next
            self._early = end_unbegun_fit(self.session, trainer, self._early, status, resumed)  # fit resumes none of it
        if self._fitting:
            self._profile_if_never(trainer, pl_module)
            self._end_fit_early(status, floats(trainer.callback_metrics))
        elif self.session.eval_in_progress:
            self.session.end_eval(self.session.evals.kind or "test", samples=self._settled_evaluation(), status=status)

    def _end_fit_early(self, status: str, logs: dict[str, float] | None = None) -> None:
        self._batch_hooks_back()  # the samples counted from the loops' progress folded in
        self._fitting = self._in_epoch = False
        self.session.count("train", self._epoch_samples)  # an epoch cut short: the samples it trained
        tracker = self.session.tracker  # and those of the validation it was in (its energy is validation's too)
        if tracker is not None and tracker.running and tracker.opened("validation") is not None:
            self.session.count("validation", self._eval_samples)
        self._epoch_samples = 0
        self.session.end_fit(status, logs=logs)

    def _finish_at_exit(self) -> None:
        """A fit open at exit ends ``KILLED`` (a ddp_spawn rank terminated because another failed: no hook sees it)."""
        if self._fitting:
            self._end_fit_early("KILLED")

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """The call's end (after every ``on_fit_end``: an exception in one of them fails the fit's run)."""
        self._let_go()
        self._pending_state = self._pending_state if stage == "fit" else None  # an evaluation's ckpt_path resumes nothing
        self._call = None
        self._early = stop_unused(self._early, unlogged=stage == "fit" and not self._fitting)
        if self._fitting:
            self._fitting = False
            held = not self.session.dist.distributed  # the profile too: until the run is complete (as the end's own)
            with signals_held(enabled=held):
                profile = self._inspect(trainer, pl_module) if self.inspect_model else None
                self.session.end_fit("FINISHED", logs=floats(trainer.callback_metrics), profile=profile)
        if trainer.is_global_zero:  # a ddp_spawn rank zero: its run and totals go back to the launching process
            self._hand_session_back()

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self._pending_state is not None:  # a checkpoint's, applied at on_fit_start: a tuner's save and restore
            return dict(self._pending_state)  # before then (BatchSizeFinder, LearningRateFinder) keeps it
        state = self.session.state_dict(epoch_samples=self._train_samples() if self._in_epoch else 0)
        if self._call is not None and not self._fitting:  # saved in this fit before our on_fit_start: a tuner's, whose
            state["saved_in_call"] = self._call  # restore in this same call resumes nothing
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callbacks before on_fit_start: apply it there, with the run known.
        if self._call is None or state_dict.get("saved_in_call") != self._call:
            self._pending_state = dict(state_dict)

    # -- pickling (ddp_spawn, copy.deepcopy(trainer)) -----------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """The callback's own state: not the model's ``log`` / ``log_dict`` that Lightning attaches at each fit."""
        self._session_for_work()  # one an earlier spawn handed back first (the copy's channel is armed by pickling)
        state = {key: value for key, value in self.__dict__.items() if key not in ("log", "log_dict")
                 and not (key in STEPPED_OUT and value is None)}  # a copy calls them at its first batch
        state["_flop_cache"] = {}  # a cache keyed by the model's classes
        state["_at_exit_registered"] = False  # a spawned rank registers its own
        state["_fitting"] = state["_in_epoch"] = False  # a copy taken while it measures starts afresh (the session's)
        state["_early"] = state["_fetch"] = state["_epoch_end"] = state["_train_counted"] = state["_eval_counted"] = None
        state["_thread"] = 0  # a copy (ddp_spawn, deepcopy) measures in threads of its own
        state["_sigterm"] = state["_term_call"] = state["_watch"] = None  # SIGTERM is the process's: a copy takes it at its own setup
        return state

    # -- internals ---------------------------------------------------------------------------
    def _setup_distributed(self, trainer: Any) -> None:
        """The session's distributed context from the trainer: each rank bills its own process tree and
        devices (``integrations/_torch_distributed.py``), its device's queue synchronised at boundaries."""
        self._session_for_work()  # one a spawned rank zero handed back first; none is looked for meanwhile
        bind_device(self.session.template, RootDevice(trainer))
        self.session.dist = distributed_context(world_size=int(getattr(trainer, "world_size", 1) or 1),
                                                is_logging_rank=bool(trainer.is_global_zero), tracker=self.session.template)

    def _let_go(self) -> None:
        """The trainer's hooks as they were: the earlier callbacks' ``on_exception``, the loops' fetch and epoch-end hooks
        (and our own batch hooks, left out of the fit's later batches)."""
        self._watch = stopped(self._watch)  # the call ends through a hook
        self._guard.restore()
        self._strategy_guard.restore()
        self._release_sigterm()
        self._batch_hooks_back()
        if self._fetch is not None:
            if self._in_epoch:  # an epoch cut short: its input wait so far
                self.session.add_data_wait(self._fetch.take_s())
            self._fetch.remove()
            self._fetch = None
        if self._epoch_end is not None:
            self._epoch_end.remove()
            self._epoch_end = None

    def _begin_eval(self, trainer: Any, kind: str) -> None:
        self._setup_distributed(trainer)
        self._eval_samples = 0
        if kind in ("test", "predict"):  # a step reading a dataloader_iter: the batches it pulls counted
            self._count_pulled_evaluation(getattr(trainer, f"{kind}_loop", None))
        # a Ctrl-C as at on_fit_start (not SIGTERM: Lightning's handler is in place during an evaluation's start)
        with sigterm_held(not self.session.dist.distributed, signal.SIGINT):
            bind_trainer_run(self.session, trainer, keep=True)
            self._guard.guard(trainer, self)
            self.session.begin_eval(kind)


def make_callback_class(callback_base: type, module: str) -> type:
    """The GreenCallback class for one Lightning package (its ``Callback`` as base)."""
    cls = type("GreenCallback", (GreenCallbackMixin, callback_base), {"__module__": module, "_callback_base": callback_base})
    for name in STEPPED_OUT:  # found at the class's own dict: Lightning looks them up at every batch
        setattr(cls, name, getattr(cls, name))  # the same function (not the idle hooks: a class combining ours with
        # another callback must reach that one's, e.g. its on_train_end)
    cls.__doc__ = GreenCallbackMixin.__doc__
    return cls
