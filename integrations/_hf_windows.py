"""The Hugging Face callback's windows: epochs, or evaluation intervals (``eval_strategy="steps"``).

A part of :class:`mlflow_green.integrations.transformers.GreenCallback`: opening and closing a
window, its validation phase, its samples, and the readable line it shows. With
``eval_strategy="steps"`` a window ends at each evaluation and its MLflow ``step`` is the
Trainer's ``global_step``; otherwise a window is an epoch and its ``step`` the epoch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from mlflow_green.formatting import progress_line
from mlflow_green.record import schema
from mlflow_green.training.session import TrainingSession

logger = logging.getLogger(__name__)


class WindowsMixin:
    """The window bookkeeping of the Hugging Face callback."""

    session: TrainingSession
    live_metrics: bool | None
    _trainer: Any
    _by_steps: bool
    _window: int | None          # the open window's number (epoch, or global step at its start)
    _next_window: int | None     # eval_strategy="steps": the window that opens at the next step (see _open_later)
    _last_window: int | None     # the last window opened in this training
    _after_point: bool           # the open window's number holds the previous window's point (steps: its evaluation)
    _closing: bool               # an epoch ended; its evaluation is still to come
    _in_validation: bool
    _logs: dict[str, float]
    _samples: int                # training samples on this rank in the open window
    _steps: int                  # optimizer steps in the open window (fallback for samples)
    _last_step_end_s: float

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

    def _open_epoch(self, state: Any) -> None:
        """An epoch's window: ``state.epoch`` floored, after the last one opened (an ``IterableDataset`` with
        ``max_steps``: the Trainer counts ``state.epoch`` against ``max_steps``, so a second pass over the data
        began at 0.57, and was numbered 0 again)."""
        epoch = int(math.floor(float(state.epoch or 0) + 1e-6))
        self._open(epoch if self._last_window is None else max(epoch, self._last_window + 1))

    def _open_later(self, step: int) -> None:
        """``eval_strategy="steps"``: the window after an evaluation at ``step`` opens as the next step begins, not
        now — a stop asked for at that evaluation (``EarlyStoppingCallback`` listed after this callback) ends the
        training with no window open, and its totals go to the evaluation's point instead of a second point there."""
        self._next_window = step

    def _open_if_due(self) -> bool:
        """Open the window :meth:`_open_later` put off (as a step begins); True if it did."""
        if self._next_window is None:
            return False
        window, self._next_window = self._next_window, None
        self._open(window, after_point=True)
        return True

    def _open(self, window: int, *, after_point: bool = False) -> None:
        self._window = self._last_window = window
        self._after_point = after_point
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
        result = self.session.end_epoch(step, logs=self._logs, train_samples=samples, steps_done=int(state.global_step))
        if self.live_metrics is not False and self.session.dist.is_logging_rank:
            show(step, self._by_steps, result.live)
        if result.stop_reason:
            logger.warning("mlflow-green: stopping training: %s", result.stop_reason)
            control.should_training_stop = True

    def _close_pending(self, state: Any) -> None:
        if self._closing:
            self._close(state, _NoControl())

    def _steps_samples(self) -> int:
        """Samples from the step count when the training steps could not be watched (this rank)."""
        args = getattr(self._trainer, "args", None)
        if args is None:
            return 0
        return self._steps * int(args.per_device_train_batch_size) * int(args.gradient_accumulation_steps)


class _NoControl:
    should_training_stop = False



def show(step: int, by_steps: bool, live: Mapping[str, float]) -> None:
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
