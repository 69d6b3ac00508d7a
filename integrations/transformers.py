"""Hugging Face Transformers integration: ``Trainer(callbacks=[GreenCallback()])``.

Per window — an epoch (``step`` = epoch), or with ``eval_strategy="steps"`` an evaluation interval
(``step`` = the Trainer's ``global_step``, lined up with its ``eval_*`` metrics): the running totals,
power, emissions, energy per sample, the phases ``train`` / ``validation`` (the Trainer's evaluation)
/ ``data`` (waiting for batches) / ``other``, the projection and ``green/accuracy_per_kwh`` (default
quality ``eval_accuracy``). At the end: totals, ``green/flop_per_j``, the model's ``green/model_*``
(torch inspector on the first training batch), the ``green.*`` tags and ``green/report.json``.

Runs: transformers' own ``MLflowCallback`` run (``report_to="mlflow"``) or any active run, else a
new run ended with the training (``FAILED`` / ``KILLED`` if ``train()`` raised). Under torchrun /
accelerate each rank measures its own devices, samples are summed, the world's process zero logs.
``trainer.evaluate()`` / ``trainer.predict()`` outside ``train()`` are measured as Lightning's
``validate`` (``test`` with ``metric_key_prefix="test"``) / ``predict`` (``_hf_evaluations``).
Checkpoints carry the totals (``_hf_state``): ``train(resume_from_checkpoint=...)`` continues them in
the same run, or starts at zero in a new run tagged ``green.resumed_from``.

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
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mlflow_green.errors import MissingExtraError

try:
    import torch  # noqa: F401  (the Trainer needs it; named in the error below when missing)
    from transformers import TrainerCallback
    from transformers import trainer_callback as _trainer_callback
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise MissingExtraError("transformers", "transformers", "mlflow_green.integrations.transformers") from exc

from mlflow_green.integrations import _hf_state
from mlflow_green.integrations._hf_ending import EndingMixin
from mlflow_green.integrations._hf_evaluations import EvaluationsMixin, rank_zero_count
from mlflow_green.integrations._hf_state import CheckpointMixin
from mlflow_green.integrations._hf_threads import CallOwner, frame_of, stand_in
from mlflow_green.integrations._hf_trainer import (
    train_wrapped,
    trainer_of,
    watch_training_step,
    watch_unwrapped_train,
)
from mlflow_green.integrations._hf_windows import WindowsMixin
from mlflow_green.integrations._torch_batches import batch_size, floats
from mlflow_green.measure.tracker import MeterSpec
from mlflow_green.training.inspection import ModelProfile
from mlflow_green.training.inspectors import inspect_model, require_inspectable
from mlflow_green.training.session import TrainingSession
from mlflow_green.training.termination import SigtermWatch

logger = logging.getLogger(__name__)

BUDGET_CHECK_INTERVAL_S = 2.0
"""How often, within a window, the energy used so far is compared with the budget (single process)."""

__all__ = ["GreenCallback"]

_ExportableState: type = getattr(_trainer_callback, "ExportableState", object)  # transformers >= 4.41


class GreenCallback(WindowsMixin, EvaluationsMixin, CheckpointMixin, EndingMixin, TrainerCallback, _ExportableState):
    """Logs energy, emissions and compression metadata of a Hugging Face ``Trainer`` training into MLflow.

    Args: those of every callback (``training.callback_options.CALLBACK_OPTIONS``) — ``quality_metric``
    (default ``eval_accuracy``, then another ``eval_*acc*``), ``max_energy_kwh`` / ``max_emissions_kg``
    (stop through ``control.should_training_stop``; reason tagged ``green.budget_stop``),
    ``live_metrics`` (a readable line per window), ``inspect_model``, ``log_report``, ``run_name``,
    ``region``, ``pue``, ``meters``, ``sample_interval_s``, ``intensity_provider``, ``scope``
    (``process`` or ``machine``), ``start_timeout_s`` / ``end_timeout_s`` (waiting for MLflow).

    Raises:
        ConfigError: at construction, for any invalid option.

    Example:
        >>> cb = GreenCallback(region="FR", max_energy_kwh=0.5, scope="machine")
        >>> cb.session.budget.max_energy_kwh, cb.session.config.carbon.region, cb.session.config.scope
        (0.5, 'FRA', 'machine')
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
        self._options: dict[str, Any] = {
            "quality_metric": quality_metric, "max_energy_kwh": max_energy_kwh, "max_emissions_kg": max_emissions_kg,
            "live_metrics": live_metrics, "inspect_model": inspect_model, "log_report": log_report, "run_name": run_name,
            "region": region, "pue": pue, "meters": meters, "sample_interval_s": sample_interval_s,
            "intensity_provider": intensity_provider, "scope": scope, "start_timeout_s": start_timeout_s,
            "end_timeout_s": end_timeout_s,
        }
        self.session = TrainingSession.for_callback("transformers", **self._options)
        self.live_metrics = live_metrics
        self.inspect_model = inspect_model
        self._trainer: Any = None  # the Trainer of the training in progress (see the mixins for the rest)
        self._trainer_for_eval: Any = None
        self._window = self._next_window = self._last_window = None
        self._after_point, self._reached_step = False, 0
        self._eval_samples: int | None = None
        self._logs: dict[str, float] = {}
        self._training = self._by_steps = self._closing = self._in_validation = self._needs_profile = False
        self._at_exit_registered = False
        self._owner: CallOwner | None = None
        self._train_watch: Any = None  # a train() not wrapped (added after Trainer(...)): watched for an exception
        self._end_pending: tuple[ModelProfile | None] | None = None  # on_train_end done, the run ends as train() returns
        self._sigterm = SigtermWatch(self._on_sigterm)
        self._samples = self._steps = self._eval_steps = 0
        self._last_step_end_s = self._last_budget_check_s = 0.0

    # -- the trainer ---------------------------------------------------------------------------
    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._watch(trainer_of(self))  # from now on, evaluate() and predict() outside train() are measured

    # -- training ------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self._elsewhere():  # another Trainer's training or evaluation, in another thread: this one goes unmeasured
            return stand_in(trainer_of(self), self)
        self._end_previous()  # a previous train() that raised where nothing saw it, or one ending in another thread
        self._setup_ranks(args, state)
        resumed = _hf_state.resumed_state(state, type(self).__name__)
        if resumed is not None:  # trainer.train(resume_from_checkpoint=...): continue the checkpoint's totals
            self.session.load_state_dict(resumed)
        _hf_state.register(state, type(self).__name__, self.state())
        self.session.bind_run()  # active at once: HF's own MLflowCallback (report_to="mlflow") then logs into it
        self._by_steps = str(getattr(args.eval_strategy, "value", args.eval_strategy)) == "steps"
        trainer = trainer_of(self)
        self._watch(trainer)
        self._attach(trainer)
        first, self._next_window, self._last_window = self._first_window(state), None, None
        self._reached_step = int(state.global_step or 0)
        self.session.begin_fit(planned_epochs=self._planned_windows(args, state, first),  # the nearer end of the two
                               planned_steps=int(state.max_steps or 0) or None, steps_done=int(state.global_step or 0))
        frame = frame_of("train", trainer)
        self._training, self._owner = True, CallOwner.here(frame)
        self._train_watch = watch_unwrapped_train(trainer, frame, self._train_raised, lambda: self._steps)  # added later
        self._logs = {}
        self._last_budget_check_s = time.perf_counter()
        if self._by_steps:
            self._open(first)
        if not self._at_exit_registered:
            atexit.register(self._finish_at_exit)
            self._at_exit_registered = True
        self._sigterm.take()  # SIGTERM: the run ends KILLED at that moment, then the process terminates

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._training or self._by_steps:
            return
        self._close_pending(state)
        self._open_epoch(state)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._open_if_due() and self._window is not None:
            self.session.add_data_wait(time.perf_counter() - self._last_step_end_s)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._window is None:
            return
        self._steps, self._reached_step = self._steps + 1, int(state.global_step)
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
        self._logs.update(floats(logs or {}))

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._eval_steps += 1

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self._logs.update(floats(metrics or {}))
        if self.session.eval_in_progress:  # trainer.evaluate() outside train()
            self._count_eval(state, kwargs.get("eval_dataloader"))
            return
        if not self._in_validation:
            return  # an evaluation outside a window (eval_on_start)
        self._in_validation = False
        self.session.end_phase("validation", samples=rank_zero_count(state, kwargs.get("eval_dataloader")))
        self._last_step_end_s = time.perf_counter()
        if self._by_steps:
            self._close(state, control)
            if not control.should_training_stop:
                self._open_later(int(state.global_step))
        elif self._closing:
            self._close(state, control)

    def on_predict(self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if self.session.eval_in_progress:
            self._count_eval(state, kwargs.get("eval_dataloader"))

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
        if train_wrapped(self._trainer) and not self.session.dist.distributed:  # it ends as train() returns: the
            self._end_pending = (profile,)  # callbacks after ours end measured, one raising there ends it FAILED
            return
        self._finish("FINISHED", profile=profile)

    def log_model(self, model: Any, *, example_input: Any = None, precision: str | None = None) -> ModelProfile | None:
        """Inspect ``model`` again and log its compression metadata into the run of the last training.

        For compression applied after training (``torch.ao.quantization.quantize_dynamic``, pruning).
        """
        require_inspectable(model, "a torch.nn.Module (the Trainer's model, or a quantized or pruned copy of it)")
        profile = self._inspect(model, example_input, precision)
        if profile is not None:
            self.session.log_profile(profile)
        return profile

    # -- the trainer: batches, model profile, failures ---------------------------------------------
    def _attach(self, trainer: Any) -> None:
        """Watch ``trainer.training_step`` (batch sizes, the first batch for FLOPs, exceptions)."""
        self._detach()
        self._needs_profile = bool(self.inspect_model)
        if trainer is None:
            logger.info("mlflow-green: Trainer not found from the callback; samples are counted from the step count")
            return
        self._trainer = trainer
        watch_training_step(trainer, on_batch=self._on_batch, on_trained=self._on_trained, on_failure=self._on_step_failure)

    def _on_batch(self, model: Any, inputs: Any) -> None:
        if self._needs_profile:
            self._needs_profile = False
            profile = self._inspect(getattr(self._trainer, "model", None) or model, inputs)
            if profile is not None:
                self.session.log_profile(profile)

    def _on_trained(self, inputs: Any) -> None:
        self._samples += batch_size(inputs)

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
