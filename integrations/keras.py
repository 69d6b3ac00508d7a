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
import sys
import time
from collections.abc import Sequence
from typing import Any

from mlflow_green.errors import MissingExtraError
from mlflow_green.integrations._device_sync import keras_synchronizer

try:
    import keras
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise MissingExtraError("keras", "keras", "mlflow_green.integrations.keras") from exc

from mlflow_green.measure.tracker import MeterSpec
from mlflow_green.training.inspection import ModelProfile
from mlflow_green.training.inspectors import inspect_model
from mlflow_green.training.session import TrainingSession
from mlflow_green.validation import check_positive_int

logger = logging.getLogger(__name__)

BUDGET_CHECK_INTERVAL_S = 2.0
"""How often, within an epoch, the energy used so far is compared with the budget."""

__all__ = ["GreenCallback"]


class GreenCallback(keras.callbacks.Callback):
    """Logs energy, emissions and compression metadata of a Keras training into MLflow.

    Per epoch (``step`` = epoch): running totals ``green/energy_kwh`` (and per component),
    ``green/power_w``, ``green/emissions_kg``, ``green/duration_s``, ``green/energy_per_sample_j``,
    the phase split ``green/energy_{train,validation,data}_kwh``, after the first epoch
    ``green/projected_energy_kwh`` / ``green/projected_emissions_kg`` for the planned epochs, and
    ``green/accuracy_per_kwh``. At the end: totals, ``green/flop_per_j``, the model's
    ``green/model_*`` metrics, the ``green.*`` tags and ``green/report.json``.
    ``model.evaluate`` / ``model.predict`` with the callback log ``green/energy_test_kwh`` /
    ``green/energy_predict_kwh`` and joules per sample.

    Runs: logs into the active MLflow run (yours, or the one ``mlflow.autolog()`` started),
    else starts one and ends it when ``fit`` ends — ``FAILED`` if ``fit`` raised, with the
    energy measured so far. A second ``fit`` with the same callback in the same run continues
    the totals, with steps after the last one; a second ``fit`` without an active run gets a
    new run.

    Args:
        quality_metric: Metric for ``green/accuracy_per_kwh`` (default ``val_accuracy``, then
            another ``val_*acc*`` metric, then ``accuracy``).
        max_energy_kwh: Stop training cleanly before this much energy is used (the budget is
            checked at each epoch end against the next epoch's projected use, and every 2 s
            against the actual use); the reason is tagged ``green.budget_stop``.
        max_emissions_kg: The same for emissions.
        live_metrics: Add ``green/energy_kwh``, ``green/emissions_kg`` and ``green/power_w`` to
            the epoch ``logs`` (progress bar and History). Default: on, except when Keras
            autologging is on (MLflow's callback would log them a second time).
        samples_per_epoch: Training samples per epoch, for joules per sample and FLOP/J.
            Default: read from Keras's data adapter when it knows its batch size (arrays,
            tensors, tf.data with known cardinality); else those metrics are not logged.
        inspect_model: Log the model's compression metadata (``green/model_*``).
        log_report: Write ``green/report.json``.
        run_name: Name of the run started when none is active.
        region: Carbon-intensity region (ISO code such as ``FR`` / ``FRA``, ``US-CA``).
        pue: Power usage effectiveness of the data centre (≥ 1).
        meters: Meter names (or instances) in priority order.
        sample_interval_s: Power sampling interval for meters without a counter.
        intensity_provider: Name of a live carbon-intensity provider plugin.
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
        start_timeout_s: float | None = None,
        end_timeout_s: float | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("samples_per_epoch", samples_per_epoch)
        self.session = TrainingSession.for_callback(
            "keras",
            quality_metric=quality_metric,
            max_energy_kwh=max_energy_kwh,
            max_emissions_kg=max_emissions_kg,
            live_metrics=live_metrics,
            inspect_model=inspect_model,
            log_report=log_report,
            run_name=run_name,
            region=region,
            pue=pue,
            meters=meters,
            sample_interval_s=sample_interval_s,
            intensity_provider=intensity_provider,
            start_timeout_s=start_timeout_s,
            end_timeout_s=end_timeout_s,
        )
        self.live_metrics = live_metrics
        self.samples_per_epoch = samples_per_epoch
        self.inspect_model = inspect_model
        self._live = bool(live_metrics) if live_metrics is not None else True
        self._in_fit = False
        self._train_samples: int | None = None
        self._originals: dict[str, Any] = {}
        self._last_step_end_s = 0.0
        self._last_budget_check_s = 0.0
        self._at_exit_registered = False

    # -- fit ---------------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._in_fit:  # the previous fit raised outside a step and was never closed
            self._finish("FAILED")
        self._in_fit = True
        self._live = self.live_metrics if self.live_metrics is not None else not _keras_autolog_enabled()
        self._train_samples = self.samples_per_epoch or _samples_of_caller("fit")
        self.session.bind_run()
        self.session.template.synchronize = keras_synchronizer()  # GPU work billed to its window
        profile = self._profile()
        self.session.begin_fit(planned_epochs=int(self.params.get("epochs") or 0), profile=profile)
        self._last_budget_check_s = time.perf_counter()
        self._wrap("train_function")
        self._wrap("test_function")
        if not self._at_exit_registered:
            atexit.register(self._finish_at_exit)
            self._at_exit_registered = True

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.session.begin_epoch(epoch)
        self._last_step_end_s = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        result = self.session.end_epoch(epoch, logs=logs or {}, train_samples=self._train_samples)
        if self._live and logs is not None:
            logs.update(result.live)
        if result.stop_reason:
            logger.warning("mlflow-green: stopping training: %s", result.stop_reason)
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._finish("FINISHED", logs=logs)

    # -- validation inside fit, evaluate and predict outside it --------------------------------
    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._in_fit:
            self.session.begin_phase("validation")
        else:
            self.session.begin_eval("test")

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        samples = _samples_of_caller("evaluate")
        if self._in_fit:
            self.session.end_phase("validation", samples=samples)
        else:
            self.session.end_eval("test", samples=samples)

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.session.begin_eval("predict")

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        self.session.end_eval("predict", samples=_samples_of_caller("predict"))

    def log_model(self, model: keras.Model | None = None) -> ModelProfile | None:
        """Inspect ``model`` (default: the last trained one) again and log its compression metadata.

        For compression applied after ``fit``: ``model.quantize("int8")`` or one-shot pruning,
        then ``callback.log_model()`` updates ``green/model_*`` and ``green.compression`` in the
        same run.
        """
        model = model if model is not None else self.model
        profile = inspect_model(model) if model is not None else None
        if profile is not None:
            self.session.log_profile(profile)
        return profile

    # -- internals ---------------------------------------------------------------------------
    def _profile(self) -> ModelProfile | None:
        return inspect_model(self.model) if self.inspect_model else None

    def _wrap(self, name: str) -> None:
        """Time each train step (the gaps between steps are input waits) and catch failures."""
        original = getattr(self.model, name, None)
        if original is None or name in self._originals:
            return
        self._originals[name] = original
        callback = self

        def step(*args: Any, **kwargs: Any) -> Any:
            start_s = time.perf_counter()
            if name == "train_function":
                callback.session.add_data_wait(start_s - callback._last_step_end_s)
            try:
                outputs = original(*args, **kwargs)
            except BaseException as exc:
                callback._finish("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
                raise
            end_s = time.perf_counter()
            callback._last_step_end_s = end_s
            if end_s - callback._last_budget_check_s >= BUDGET_CHECK_INTERVAL_S and callback.session.budget.active:
                callback._last_budget_check_s = end_s
                if callback.session.check_budget():
                    callback.model.stop_training = True
            return outputs

        setattr(self.model, name, step)

    def _unwrap(self) -> None:
        for name, original in self._originals.items():
            try:
                setattr(self.model, name, original)
            except Exception:  # the model may be gone
                pass
        self._originals = {}

    def _finish(self, status: str, logs: dict[str, Any] | None = None) -> None:
        if not self._in_fit:
            return
        self._in_fit = False
        self._unwrap()
        profile = self._profile() if status == "FINISHED" else None
        self.session.end_fit(status, logs=logs, profile=profile)

    def _finish_at_exit(self) -> None:
        """A fit that never reached on_train_end (an exception outside a step) ends FAILED."""
        if self._in_fit:
            self._finish("FAILED")


def _keras_autolog_enabled() -> bool:
    """True if ``mlflow.keras.autolog()`` / ``mlflow.autolog()`` is on (its callback logs ``logs``)."""
    try:
        from mlflow.utils.autologging_utils import autologging_is_disabled

        return not autologging_is_disabled("keras") or not autologging_is_disabled("tensorflow")
    except Exception:
        return False


def _samples_of_caller(method: str) -> int | None:
    """Samples per pass of the ``fit`` / ``evaluate`` / ``predict`` call running this callback.

    Keras does not tell callbacks the batch size; its epoch iterator's data adapter knows it
    for arrays, tensors and datasets of known cardinality. Best effort: None when unknown.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == method and "epoch_iterator" in frame.f_locals:
            return _adapter_samples(frame.f_locals["epoch_iterator"])
        frame = frame.f_back
    return None


def _adapter_samples(epoch_iterator: Any) -> int | None:
    try:
        adapter = epoch_iterator.data_adapter
        steps = epoch_iterator.num_batches
        batch_size = adapter.batch_size
        if not steps or not batch_size:
            return None
        if steps == adapter.num_batches and adapter.has_partial_batch and adapter.partial_batch_size:
            return int((steps - 1) * batch_size + adapter.partial_batch_size)
        return int(steps * batch_size)
    except Exception:
        return None
