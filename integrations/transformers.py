"""Hugging Face Transformers integration: ``Trainer(callbacks=[GreenCallback()])``.

Windows: with ``eval_strategy="steps"`` each evaluation interval is a window and its MLflow
``step`` is the Trainer's ``global_step`` at the evaluation (so ``green/energy_kwh`` lines up with
``eval_*`` in MLflow's charts); otherwise each epoch is a window and ``step`` = epoch, as in the
Keras and Lightning callbacks. Per window: running totals ``green/energy_kwh`` (and per component),
``green/power_w``, ``green/emissions_kg``, ``green/duration_s``, ``green/energy_per_sample_j``, the
phase split ``green/energy_{train,validation,data}_kwh`` (validation = the Trainer's evaluation;
data = time the loop waited for its batches), ``green/projected_*`` after the first window and
``green/accuracy_per_kwh`` from the evaluation metrics (default quality: ``eval_accuracy``). At
the end: totals, ``green/flop_per_j``, the model's ``green/model_*`` (torch inspector, FLOPs from
the first training batch), the ``green.*`` tags and ``green/report.json``.

Runs: transformers' own ``MLflowCallback`` run when ``report_to="mlflow"`` (or any active run:
yours, ``mlflow.autolog()``'s), else a new run ended with the training — ``FAILED`` / ``KILLED``
if a training step raised, with the energy so far. Under torchrun / accelerate each rank measures
only its own devices, samples are counted on every rank and summed, and only the world's process
zero logs.

Example::

    from transformers import Trainer, TrainingArguments
    from mlflow_green.integrations.transformers import GreenCallback

    trainer = Trainer(model=model, args=TrainingArguments("out", report_to="mlflow"),
                      train_dataset=train, eval_dataset=val, callbacks=[GreenCallback()])
    trainer.train()
"""

from __future__ import annotations

import atexit
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mlflow_green.errors import MissingExtraError

try:
    import torch  # noqa: F401  (the Trainer needs it; named in the error below when missing)
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise MissingExtraError("transformers", "transformers", "mlflow_green.integrations.transformers") from exc

from mlflow_green.formatting import progress_line
from mlflow_green.integrations._torch_distributed import batch_size, bind_device, distributed_context
from mlflow_green.measure.tracker import MeterSpec
from mlflow_green.record import schema
from mlflow_green.training.inspection import ModelProfile
from mlflow_green.training.inspectors import inspect_model
from mlflow_green.training.session import TrainingSession

logger = logging.getLogger(__name__)

BUDGET_CHECK_INTERVAL_S = 2.0
"""How often, within a window, the energy used so far is compared with the budget (single process)."""

__all__ = ["GreenCallback"]


class GreenCallback(TrainerCallback):
    """Logs energy, emissions and compression metadata of a Hugging Face ``Trainer`` training into MLflow.

    Args: as the Keras and Lightning callbacks — ``quality_metric`` (default ``eval_accuracy``, then
    another ``eval_*acc*``), ``max_energy_kwh`` / ``max_emissions_kg`` (stop through
    ``control.should_training_stop`` before the budget is spent; reason tagged ``green.budget_stop``),
    ``live_metrics`` (a readable line per window in the Trainer's output), ``inspect_model``,
    ``log_report``, ``run_name``, and the tracker's ``region``, ``pue``, ``meters``,
    ``sample_interval_s``, ``intensity_provider``, ``scope``.

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
        self.session = TrainingSession.for_callback(
            "transformers", quality_metric=quality_metric, max_energy_kwh=max_energy_kwh,
            max_emissions_kg=max_emissions_kg, live_metrics=live_metrics, inspect_model=inspect_model,
            log_report=log_report, run_name=run_name, region=region, pue=pue, meters=meters,
            sample_interval_s=sample_interval_s, intensity_provider=intensity_provider, scope=scope,
            start_timeout_s=start_timeout_s, end_timeout_s=end_timeout_s,
        )
        self.live_metrics = live_metrics
        self.inspect_model = inspect_model
        self._training = False
        self._trainer: Any = None
        self._by_steps = False
        self._window: int | None = None      # the open window's number (epoch, or global step at its start)
        self._closing = False                # an epoch ended; its evaluation is still to come
        self._in_validation = False
        self._logs: dict[str, float] = {}
        self._samples = 0                    # training samples on this rank in the open window
        self._steps = 0                      # optimizer steps in the open window (fallback for samples)
        self._needs_profile = False
        self._last_step_end_s = 0.0
        self._last_budget_check_s = 0.0
        self._at_exit_registered = False

    # -- training ------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self._training:  # the previous train() raised outside a step and was never closed
            self._finish("FAILED")
        bind_device(self.session.template, lambda: args.device)  # sync its queue; its UUID for NVML
        self.session.dist = distributed_context(  # each rank bills its own processes and devices
            world_size=int(args.world_size or 1), is_logging_rank=bool(state.is_world_process_zero), tracker=self.session.template
        )
        self.session.bind_run()
        self._by_steps = str(getattr(args.eval_strategy, "value", args.eval_strategy)) == "steps"
        self._attach(_trainer_of(self), model)
        first = self._first_window(state)
        self.session.begin_fit(planned_epochs=self._planned_windows(args, state, first))
        self._training = True
        self._logs = {}
        self._last_budget_check_s = time.perf_counter()
        if self._by_steps:
            self._open(first)
        if not self._at_exit_registered:
            atexit.register(self._finish_at_exit)
            self._at_exit_registered = True

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._training or self._by_steps:
            return
        self._close_pending(state)
        self._open(int(math.floor(float(state.epoch or 0) + 1e-6)))

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._window is not None:
            self.session.add_data_wait(time.perf_counter() - self._last_step_end_s)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._window is None:
            return
        self._steps += 1
        now_s = time.perf_counter()
        self._last_step_end_s = now_s
        if self._by_steps and control.should_evaluate:
            self._begin_validation()
        if (
            self.session.budget.active
            and self.session.dist.world_size == 1  # ranks must agree: in DDP budgets are checked per window
            and now_s - self._last_budget_check_s >= BUDGET_CHECK_INTERVAL_S
        ):
            self._last_budget_check_s = now_s
            if self.session.check_budget():
                control.should_training_stop = True

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._window is None or self._by_steps:
            return
        if control.should_evaluate:  # the Trainer evaluates right after this hook: part of this epoch
            self._closing = True
            self._begin_validation()
        else:
            self._close(state, control)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self._logs.update(_floats(logs or {}))

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self._logs.update(_floats(metrics or {}))
        if not self._in_validation:
            return  # an evaluation outside a window (eval_on_start, or trainer.evaluate() by hand)
        self._in_validation = False
        self.session.end_phase("validation", samples=_eval_samples(args, kwargs.get("eval_dataloader")))
        self._last_step_end_s = time.perf_counter()
        if self._by_steps:
            self._close(state, control)
            if not control.should_training_stop:
                self._open(int(state.global_step))
        elif self._closing:
            self._close(state, control)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._last_step_end_s = time.perf_counter()  # writing a checkpoint is not waiting for data

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not self._training:
            return
        self._close_pending(state)
        if self._window is not None and (self._steps or not self._by_steps):
            self._close(state, control)
        self._window = None
        profile = self._inspect(model, None) if self.inspect_model and self._trainer is None else None
        self._finish("FINISHED", profile=profile)

    def log_model(self, model: Any, *, example_input: Any = None, precision: str | None = None) -> ModelProfile | None:
        """Inspect ``model`` again and log its compression metadata into the run of the last training.

        For compression applied after training (``torch.ao.quantization.quantize_dynamic``, pruning).
        """
        profile = self._inspect(model, example_input, precision)
        if profile is not None:
            self.session.log_profile(profile)
        return profile

    # -- windows ------------------------------------------------------------------------------
    def _first_window(self, state: Any) -> int:
        return int(state.global_step or 0) if self._by_steps else int(math.floor(float(state.epoch or 0) + 1e-6))

    def _planned_windows(self, args: Any, state: Any, first: int) -> int:
        """``planned_epochs`` for the projection: the window number the training ends at."""
        if not self._by_steps:
            return int(math.ceil(float(state.num_train_epochs or args.num_train_epochs or 0)))
        eval_steps = int(state.eval_steps or 0) or 1
        remaining = max(int(state.max_steps or 0) - first, 0)
        # window numbers are global steps: the projection counts windows after the first one
        return first + int(math.ceil(remaining / eval_steps))

    def _open(self, window: int) -> None:
        self._window = window
        self._closing = False
        self._samples = self._steps = 0
        self._last_step_end_s = time.perf_counter()
        self.session.begin_epoch(window)

    def _begin_validation(self) -> None:
        if not self._in_validation:
            self._in_validation = True
            self.session.begin_phase("validation")

    def _close(self, state: Any, control: Any) -> None:
        window, self._window, self._closing = self._window, None, False
        if window is None:
            return
        if self._in_validation:  # an evaluation that never reported back
            self._in_validation = False
            self.session.end_phase("validation")
        step = int(state.global_step) if self._by_steps else window
        samples = self._samples or self._steps_samples()  # this rank's: end_epoch sums them over ranks
        result = self.session.end_epoch(step, logs=self._logs, train_samples=samples)
        if self.live_metrics is not False and self.session.dist.is_logging_rank:
            _show(self.session, step, self._by_steps, result.live)
        if result.stop_reason:
            logger.warning("mlflow-green: stopping training: %s", result.stop_reason)
            control.should_training_stop = True

    def _close_pending(self, state: Any) -> None:
        if self._closing:
            self._close(state, _NoControl())

    def _steps_samples(self) -> int:
        """Samples from the step count when the training steps could not be watched (this rank)."""
        trainer = self._trainer
        args = getattr(trainer, "args", None)
        if args is None:
            return 0
        return self._steps * int(args.per_device_train_batch_size) * int(args.gradient_accumulation_steps)

    # -- the trainer: batches, model profile, failures -------------------------------------------
    def _attach(self, trainer: Any, model: Any) -> None:
        """Watch ``trainer.training_step`` (batch sizes, the first batch for FLOPs, exceptions)."""
        self._detach()
        self._needs_profile = bool(self.inspect_model)
        if trainer is None:
            logger.info("mlflow-green: Trainer not found from the callback; samples are counted from the step count")
            return
        self._trainer = trainer
        original = trainer.training_step
        callback = self

        def training_step(model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            if callback._needs_profile:
                callback._needs_profile = False
                profile = callback._inspect(getattr(trainer, "model", None) or model, inputs)
                if profile is not None:
                    callback.session.log_profile(profile)
            callback._samples += batch_size(inputs)
            try:
                return original(model, inputs, *args, **kwargs)
            except BaseException as exc:
                callback._finish("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
                raise

        trainer.training_step = training_step

    def _detach(self) -> None:
        trainer, self._trainer = self._trainer, None
        if trainer is not None and "training_step" in vars(trainer):
            try:
                del trainer.training_step
            except Exception:
                pass

    def _inspect(self, model: Any, example: Any, precision: str | None = None) -> ModelProfile | None:
        if model is None:
            return None
        args = getattr(self._trainer, "args", None)
        if precision is None and args is not None:
            precision = "bf16-mixed" if args.bf16 else "16-mixed" if args.fp16 else None
        context: dict[str, Any] = {"precision": precision}
        if example is not None:
            context["example_input"] = {k: v for k, v in example.items() if k != "labels"} if isinstance(example, Mapping) else example
        return inspect_model(model, **context)

    def _finish(self, status: str, profile: ModelProfile | None = None) -> None:
        if not self._training:
            return
        self._training = False
        self._window, self._closing, self._in_validation = None, False, False
        self._detach()
        self.session.end_fit(status, logs=self._logs, profile=profile)

    def _finish_at_exit(self) -> None:
        """A training that never reached on_train_end (an exception outside a step) ends FAILED."""
        if self._training:
            self._finish("FAILED")


class _NoControl:
    should_training_stop = False


def _trainer_of(callback: GreenCallback) -> Any:
    """The Trainer whose callback handler is calling ``callback`` (found on the call stack), or None."""
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        handler = getattr(candidate, "callback_handler", None)
        if handler is not None and any(cb is callback for cb in getattr(handler, "callbacks", ())):
            return candidate
        frame = frame.f_back
    return None


def _eval_samples(args: Any, dataloader: Any) -> int | None:
    """Evaluation samples (all ranks): the evaluation dataset's length, when it has one."""
    try:
        return len(dataloader.dataset)
    except Exception:
        return None


def _floats(values: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in values.items():
        try:
            number = float(value.item() if hasattr(value, "item") else value)
        except (TypeError, ValueError, RuntimeError):
            continue
        if math.isfinite(number):
            out[str(key)] = number
    return out


def _show(session: TrainingSession, step: int, by_steps: bool, live: Mapping[str, float]) -> None:
    """One readable line per window in the Trainer's output (above its progress bar)."""
    if schema.ENERGY_KWH not in live:
        return
    where = f"step {step}" if by_steps else f"epoch {step + 1}"  # epochs counted from 1, as the Trainer shows them
    line = progress_line(where, live[schema.ENERGY_KWH], live.get(schema.POWER_W), live.get(schema.EMISSIONS_KG))
    try:
        from tqdm.auto import tqdm

        tqdm.write(line)
    except Exception:
        print(line)
