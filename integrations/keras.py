"""Keras 3 integration: ``model.fit(..., callbacks=[GreenCallback()])``.

One line, and the MLflow run holds the energy, emissions and compression story of the model.
The callback is a thin adapter over :class:`mlflow_green.training.session.TrainingSession`.

Example::

    from mlflow_green.integrations.keras import GreenCallback
    model.fit(x, y, validation_data=(xv, yv), epochs=5, callbacks=[GreenCallback()])
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from mlflow_green.errors import MissingExtraError
from mlflow_green.integrations._device_sync import keras_synchronizer

try:
    import keras
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise MissingExtraError("keras", "keras", "mlflow_green.integrations.keras") from exc

from mlflow_green.formatting import readable_figures
from mlflow_green.integrations import _keras_frames as frames
from mlflow_green.integrations import _keras_samples as samples_of
from mlflow_green.integrations._fit_watch import open_fit_status
from mlflow_green.integrations._keras_backup import bind_resumable
from mlflow_green.integrations._keras_batch_list import no_batch_work
from mlflow_green.integrations._keras_call_model import CallModelMixin
from mlflow_green.integrations._keras_evaluations import evaluations_in
from mlflow_green.integrations._keras_guard import CallGuard
from mlflow_green.integrations._keras_input import reads_input_in_python
from mlflow_green.integrations._keras_profile import log_built_profile
from mlflow_green.integrations._mlflow_autolog import mlflow_autologging_on
from mlflow_green.measure.tracker import MeterSpec
from mlflow_green.record.runs import leave_active
from mlflow_green.training.inspection import ModelProfile
from mlflow_green.training.inspectors import inspect_model, require_inspectable
from mlflow_green.training.session import TrainingSession
from mlflow_green.training.signal_holds import signals_held
from mlflow_green.validation import check_positive_int

logger = logging.getLogger(__name__)

_ENDING = threading.RLock()  # ends fits one at a time (a watching thread's end, the training thread's next fit)
BUDGET_CHECK_INTERVAL_S = 2.0
"""How often, within an epoch, the energy used so far is compared with the budget."""

__all__ = ["GreenCallback"]


class GreenCallback(CallModelMixin, keras.callbacks.Callback):
    """Logs energy, emissions and compression metadata of a Keras training into MLflow.

    Per epoch (``step`` = epoch, one point per step): running totals ``green/energy_kwh`` (and per component),
    ``green/power_w``, ``green/emissions_kg``, ``green/duration_s``, ``green/energy_per_sample_j``, the phases
    ``green/energy_{train,validation,data,other}_kwh`` (they add up to the total), ``green/projected_energy_kwh`` /
    ``green/projected_emissions_kg`` and ``green/accuracy_per_kwh``. At the end the final totals replace the last
    epoch's at its step, with ``green/flop_per_j``, the ``green/model_*`` values that changed, the ``green.*`` tags
    and ``green/report.json``. ``model.evaluate`` / ``model.predict`` with the callback log
    ``green/energy_test_kwh`` / ``green/energy_predict_kwh`` and joules per sample.

    Runs: logs into the active MLflow run (yours, or the one ``mlflow.autolog()`` started; never
    ended by the callback), else starts one and ends it when ``fit`` ends, however it ends —
    ``FAILED`` on an exception anywhere in ``fit`` (a step, another callback, the input pipeline),
    ``KILLED`` on ``KeyboardInterrupt`` or ``SIGTERM`` — with the meters stopped at that moment.
    A second ``fit`` with the same callback in the same run continues the totals, with steps
    after the last one; a second ``fit`` without an active run gets a new run.

    Args:
        quality_metric: Metric for ``green/accuracy_per_kwh`` (default ``val_accuracy``, then
            another ``val_*acc*`` metric, then ``accuracy``).
        max_energy_kwh: Stop training cleanly before this much energy is used (the budget is
            checked at each epoch end against the next epoch's projected use, and every 2 s
            against the actual use); the reason is tagged ``green.budget_stop``.
        max_emissions_kg: The same for emissions.
        live_metrics: Add ``green/energy_kwh``, ``green/emissions_kg`` and ``green/power_w`` to the epoch
            ``logs`` (progress bar, History). Default: on, unless Keras autologging is (it would log them twice).
        samples_per_epoch: Training samples per epoch, for joules per sample and FLOP/J.
            Default: the samples the train step actually saw (any input, even of unknown
            length), else the batches read (torch, JAX), else Keras's data adapter.
        inspect_model: Log the model's compression metadata (``green/model_*``).
        log_report: Write ``green/report.json``.
        run_name: Name of the run started when none is active.
        region: Carbon-intensity region (ISO code such as ``FR`` / ``FRA``, ``US-CA``).
        pue: Power usage effectiveness of the data centre (≥ 1).
        meters: Meter names (or instances) in priority order.
        sample_interval_s: Power sampling interval for meters without a counter.
        intensity_provider: Name of a live carbon-intensity provider plugin.
        scope: ``process`` (default, else ``MLFLOW_GREEN_SCOPE``): bill this training's GPUs and
            its share of CPU and RAM; ``machine``: whole devices (a dedicated host).
        start_timeout_s: Longest wait for MLflow to create the run at the start of ``fit``
            (default ``MLFLOW_GREEN_START_TIMEOUT_S`` or 2 s); then the creation is spooled.
        end_timeout_s: Longest wait for the writes to reach MLflow at the end of ``fit``
            (default ``MLFLOW_GREEN_END_TIMEOUT_S`` or 30 s); then they stay spooled.

    Raises:
        ConfigError: at construction, for any invalid option.

    Example:
        >>> cb = GreenCallback(region="FR", max_energy_kwh=0.5)
        >>> cb.session.budget.max_energy_kwh, cb.session.config.carbon.region
        (0.5, 'FRA')
    """

    def __init__(
        self,
        *,
        quality_metric: str | None = None,
        max_energy_kwh: float | None = None,
        max_emissions_kg: float | None = None,
        live_metrics: bool | None = None,
        samples_per_epoch: int | None = None,
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
        check_positive_int("samples_per_epoch", samples_per_epoch)
        self.session = TrainingSession.for_callback(
            "keras", quality_metric=quality_metric, max_energy_kwh=max_energy_kwh, max_emissions_kg=max_emissions_kg,
            live_metrics=live_metrics, inspect_model=inspect_model, log_report=log_report, run_name=run_name,
            region=region, pue=pue, meters=meters, sample_interval_s=sample_interval_s,
            intensity_provider=intensity_provider, scope=scope, start_timeout_s=start_timeout_s, end_timeout_s=end_timeout_s,
        )
        self.live_metrics, self.samples_per_epoch, self.inspect_model = live_metrics, samples_per_epoch, inspect_model
        self._live = bool(live_metrics) if live_metrics is not None else True
        self._in_fit = self._validation_watched = self._epoch_open = False  # open: between on_epoch_begin and _end
        self._fit_guard: CallGuard | None = None
        self._eval_guard: CallGuard | None = None
        self._epoch_train_samples: int | None = None
        self._adapter_counts = samples_of.AdapterCounts()  # the data adapters' counts, per iterator of this fit
        self._last_budget_check_s, self._profile_pending = 0.0, False  # pending: the model not built at the fit's start
        self._at_exit_registered = False
        self._claim = frames.CallClaim()  # the thread whose call it measures (one at a time)

    # -- fit ---------------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not frames.claims_call(self, "fit", GreenCallback):  # another thread's call, or another GreenCallback first
            return
        if self._in_fit and self._fit_guard is not None and self._fit_guard.training_over():  # from an on_train_end
            self._finish("FINISHED", logs=self._fit_guard.train_end_logs)  # the fit it is in: over (its epochs all done)
        self._finish(open_fit_status(self._fit_guard) if self._in_fit else "FAILED")  # an open fit; or waits for one a watch ends
        self._claim.take(lambda: False)  # this fit's (ending an open one gave it back)
        self._in_fit, self._validation_watched = True, False
        self._adapter_counts.clear()
        self._live = frames.live_figures_allowed(self.live_metrics, mlflow_autologging_on("keras", "tensorflow"))
        per_step = self._check_budget if self.session.budget.active else None  # nothing else runs after each step
        self._fit_guard = CallGuard(self._take_call_model("fit"), self._abort, python_input=reads_input_in_python(), on_step_end=per_step)
        self._fit_guard.watch("fit", ours=self)  # before the run is bound: a Ctrl-C meanwhile is the training's (KILLED)
        self._claim.settle()
        with signals_held(at_once=True):  # Ctrl-C/SIGTERM in the bind (seconds) or profile: raised at its end (KILLED), see docs
            try:
                bind_resumable(self.session)  # a fit Keras restores from a backup resumes the run that wrote it
                self.session.template.synchronize = keras_synchronizer()  # GPU work billed to its window
                self.session.begin_fit(planned_epochs=frames.fit_epochs(self.params))
            except Exception as exc:  # measurement never crashes training: this fit goes unmeasured, its run ended
                logger.warning("mlflow-green: could not start measuring this fit (%r); it trains unmeasured", exc)
                self._finish("FAILED")
                return self.session.output.close("FAILED")  # the run bound before it failed (no fit began: nothing ends it)
            self.session.output.still_in_call = self._fit_guard.fit_running  # a call inside it gets a child run
            self._fit_guard.on_epoch_end_start = self.session.training_ended  # read before callbacks listed ahead of ours
            self.session.expects_validation = self._fit_guard.validates  # quality from val_ metrics (validation_freq)
            self._profile_pending = self.inspect_model and not log_built_profile(self.session, self._profile)  # built?
        self._last_budget_check_s = time.perf_counter()
        if not self._at_exit_registered:  # a fit still open at exit (ended in a way no hook saw)
            self._at_exit_registered = bool(atexit.register(self._finish, "FAILED"))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.session.begin_epoch(epoch)
        self._epoch_train_samples, self._epoch_open = None, True
        if self._fit_guard is not None:
            self._fit_guard.reset_counts()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        guard = self._fit_guard
        self._epoch_open = False
        if self._epoch_train_samples is None:  # no validation this epoch: read the count now
            self._epoch_train_samples = self._train_samples_seen()
        if guard is not None:
            self.session.add_data_wait(guard.data_wait_s)
        if self._profile_pending:  # TensorFlow built the model in its first step: its profile at this epoch's step
            self._profile_pending = not log_built_profile(self.session, self._profile)
        result = self.session.end_epoch(epoch, logs=logs or {}, train_samples=self._epoch_train_samples)
        if self._live and logs is not None:  # the progress bar writes them as the CLI and the view do
            logs.update(readable_figures(result.live))
        if result.stop_reason or (guard is not None and guard.stop_requested):
            logger.warning("mlflow-green: stopping training: %s", result.stop_reason or self.session.stop_reason)
            self._call_model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        guard = self._fit_guard
        if guard is not None and guard.in_list_train_end:  # the callbacks listed after ours first (measured), our run
            guard.after_list_train_end = lambda: self._finish("FINISHED", logs=logs)  # no longer active: theirs may
            leave_active(self.session.output.run)  # start a run of their own there, as before a GreenCallback
            return
        self._finish("FINISHED", logs=logs)

    # -- validation inside fit, evaluate and predict outside it --------------------------------
    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._still_in_fit():
            if self._epoch_train_samples is None and not evaluations_in(self._fit_guard).mid_training:  # before the reset
                self._epoch_train_samples = self._train_samples_seen()
            if self._fit_guard is not None and not self._validation_watched and not evaluations_in(self._fit_guard).in_callback_evaluate:
                self._fit_guard.watch("evaluate", timed=False)  # Keras reuses the validation's iterator and callbacks
                self._validation_watched = True
            self.session.begin_phase("validation")
        elif frames.claims_call(self, "evaluate", GreenCallback):
            self._eval_guard = CallGuard(self._take_call_model("evaluate"), self._abort, python_input=reads_input_in_python()).watch("evaluate", ours=self)
            self._claim.settle()
            self.session.begin_eval("test")

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        own = self._in_fit and not evaluations_in(self._fit_guard).in_callback_evaluate  # fit's own validation: the
        cached = getattr(self._call_model, "_eval_epoch_iterator", None) if own else None  # the iterator Keras keeps
        counted = self._adapter_counts(cached) if cached is not None else samples_of.adapter_samples(samples_of.iterator_of_caller("evaluate"))
        samples = samples_of.evaluation_samples(counted, self._fit_guard if own else self._eval_guard, self._synced_model, validation=own)
        if self._in_fit:  # no training follows it in this epoch, unless a callback ran it inside the epoch's training
            self.session.end_phase("validation", samples=samples, ends_epoch=not evaluations_in(self._fit_guard).mid_training)
        else:
            self._end_eval("test", samples)

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self._still_in_fit() and not frames.claims_call(self, "predict", GreenCallback):
            return
        if not self._in_fit:
            self._eval_guard = CallGuard(self._take_call_model("predict"), self._abort, python_input=reads_input_in_python()).watch("predict", ours=self)
            self._claim.settle()
        self.session.begin_eval("predict")

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        guard = self._eval_guard
        samples = (guard and (guard.predicted or guard.samples)) or samples_of.adapter_samples(samples_of.iterator_of_caller("predict"))
        if self._in_fit:
            self.session.end_eval("predict", samples=samples)
        else:
            self._end_eval("predict", samples)

    on_train_batch_begin = on_train_batch_end = on_test_batch_begin = on_test_batch_end = on_predict_batch_begin = on_predict_batch_end = staticmethod(no_batch_work)

    def log_model(self, model: keras.Model | None = None) -> ModelProfile | None:
        """Inspect ``model`` (default: the last trained one) again and log what changed (after ``quantize("int8")``,
        pruning): ``green/model_*`` at the step after the last, ``green.compression``, ``green/report.json``."""
        model = model if model is not None else self._last_model()
        require_inspectable(model, "a keras.Model (or none after a fit: the last trained one)")
        profile = inspect_model(model)
        if profile is not None:
            self.session.log_profile(profile)  # (waits for a fit's end in another thread: session_end.FIT_ENDING)
        return profile

    # -- pickling (copy.deepcopy, scikit-learn clones) ------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None, "_measured": None, "_fit_guard": None, "_eval_guard": None, "_in_fit": False,
                "_at_exit_registered": False}

    # -- internals ---------------------------------------------------------------------------
    def _train_samples_seen(self) -> int | None:
        return samples_of.epoch_train_samples(self.samples_per_epoch, self._fit_guard, self._synced_model, self._adapter_counts)

    def _still_in_fit(self) -> bool:
        """In a fit (its validation, a callback's predict), not right after one that Keras's own code ended."""
        guard = self._fit_guard
        if self._in_fit and guard is not None:
            guard.end_if_fit_left()  # ended FAILED now, before its watch's next look
            if guard.training_over():  # from a callback's on_train_end (before or after ours): the fit is over
                self._finish("FINISHED", logs=guard.train_end_logs)
        return self._in_fit and not self._claim.held_elsewhere() and not frames.busy_elsewhere(self._fit_guard, self._eval_guard)

    def _check_budget(self) -> None:
        """After a train step (hot path): compare the energy so far with the budget every few seconds."""
        now_s = time.perf_counter()
        if not self.session.budget.active or now_s - self._last_budget_check_s < BUDGET_CHECK_INTERVAL_S:
            return
        self._last_budget_check_s = now_s
        if self.session.check_budget() and self._fit_guard is not None:
            self._fit_guard.stop_requested = True  # applied after the batch's callbacks, never inside the step

    def _abort(self, exc: BaseException) -> None:
        """The fit (or evaluate / predict) ends with ``exc``, now: stop measuring, end our run."""
        status = "KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED"
        with _ENDING:  # the fit's own guard only: a late watch of an earlier fit never ends the next one
            if self._in_fit and self._fit_guard is not None and self._fit_guard.aborted:
                self._finish(status)
            elif not self._in_fit and self.session.eval_in_progress and getattr(self._eval_guard, "aborted", True):
                self._end_eval(self.session.evals.kind or "test", None, status=status)

    def _end_eval(self, kind: str, samples: int | None, status: str = "FINISHED") -> None:
        guard, self._eval_guard = self._eval_guard, None
        samples = samples if samples is not None or status == "FINISHED" else samples_of.call_cut_short(kind, guard, self._synced_model)
        with frames.evaluation_ending(guard, self._claim):  # a Ctrl-C meanwhile waits for the figures
            self.session.end_eval(kind, samples=samples, status=status)

    def _finish(self, status: str, logs: dict[str, Any] | None = None) -> None:
        with _ENDING:  # a thread watching the fit may end it while the training thread starts the next
            self._finish_now(status, logs)

    def _finish_now(self, status: str, logs: dict[str, Any] | None) -> None:
        if not self._in_fit:
            return
        self._in_fit = False
        if self._epoch_open:  # the fit ended inside an epoch: the samples it trained are billed too
            self._epoch_open = False
            samples_of.count_cut_short(self.session, self._epoch_train_samples, self._fit_guard, self._synced_model, self.samples_per_epoch)
            if self._fit_guard is not None:  # its input wait so far: the cut-short epoch is split as a whole one's
                self.session.add_data_wait(self._fit_guard.data_wait_s)
        guard, self._fit_guard = self._fit_guard, None
        self._adapter_counts.clear()
        if guard is not None:  # a Ctrl-C or SIGTERM put off in our code (last epoch's end): delivered after, KILLED
            status = "KILLED" if guard.signal_pending() else status
            guard.remove()
        held = not self.session.dist.distributed  # else a signal must still end a collective waiting for a rank gone
        with signals_held(enabled=held):  # the profile too
            profile = self._profile() if (status == "FINISHED" or self._profile_pending) and self.inspect_model else None
            self.session.end_fit(status, logs=logs, profile=profile)
        self._claim.release()

