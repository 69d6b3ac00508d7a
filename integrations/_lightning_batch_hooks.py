"""The Lightning callback's batch hooks, and how they step out of the batches that need nothing of them.

Lightning's ``_call_callback_hooks`` skips a hook that is not callable. Once a fit's first batch has started
with the fetches timed (``_lightning_fetch``) and the model profiled, the callback sets its own
``on_train_batch_start`` to ``None`` on itself; where the epoch's samples follow from the loop's progress
(``_lightning_batch_count``: a plain DataLoader) and no energy budget is checked after batches, its
``on_train_batch_end`` too — and at its first validation, ``on_validation_batch_end`` likewise. Nothing of ours
then runs between two batches but the fetch timer. The samples counted from the progress are folded in at each
epoch's (validation's) end; the hooks stay out for the fit's later epochs, and are back at its end however it ends,
at the next fit's start, and at each epoch's end where the samples are counted batch by batch or the loaders are
reloaded (``reload_dataloaders_every_n_epochs``). A subclass's own hook, or a wrapper set on the instance, is called
at every batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mlflow_green.integrations._lightning_batch_count import CountedBatches
from mlflow_green.integrations._lightning_fetch import FetchTimer
from mlflow_green.integrations._lightning_pulled import PulledBatches
from mlflow_green.integrations._torch_batches import batch_size
from mlflow_green.training.session import TrainingSession

BUDGET_CHECK_INTERVAL_S = 2.0
"""How often, within an epoch, the energy used so far is compared with the budget (single process)."""
STEPPED_OUT = ("on_train_batch_start", "on_train_batch_end", "on_validation_batch_end")
"""The hooks the callback sets to ``None`` on itself while they have nothing to do (a copy gets them back)."""


class BatchHooksMixin:
    """The batch hooks of :class:`~mlflow_green.integrations._lightning_impl.GreenCallbackMixin`."""

    session: TrainingSession
    _in_epoch: bool
    _fitting: bool
    _needs_profile: bool
    _budget_per_batch: bool
    _fetch: FetchTimer | None
    _epoch_samples: int
    _eval_samples: int
    _last_batch_end_s: float
    _last_budget_check_s: float
    _sizes: Callable[[Any], int]  # a training batch's samples (several loaders' combined: their sum)
    _train_counted: CountedBatches | None = None  # the fit's training samples, from its loop's progress
    _train_counting = False  # the epoch's counted samples not folded in yet
    _eval_counted: CountedBatches | None = None  # the fit's validation samples
    _eval_counting = False
    _train_pulls: PulledBatches | None = None  # the epoch's training_step reads a dataloader_iter: the batches it pulls
    _eval_pulls: PulledBatches | None = None  # the evaluation's step likewise

    _resumed_inside_an_epoch: Callable[[Any], None]  # the callback's (its epoch begun at a resumed first batch)
    _profile_first_batch: Callable[[Any, Any, Any], None]  # ProfileMixin's

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if not self._in_epoch:
            self._resumed_inside_an_epoch(trainer)
        if self._fetch is None:  # no fetch timer (its time is taken at the epoch's end): the gap since the last batch
            self.session.add_data_wait(time.perf_counter() - self._last_batch_end_s)
        if self._needs_profile and batch is not None:  # None: a training_step reading a dataloader_iter (at its end)
            self._profile_first_batch(trainer, pl_module, batch)
            self._last_batch_end_s = time.perf_counter()  # profiling is not data wait
        if self._fetch is not None and self._in_epoch and not self._needs_profile:
            self._step_out(trainer)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._train_pulls is None:
            self._epoch_samples += self._sizes(batch)
        if self._needs_profile:  # the batch start had none (a training_step reading a dataloader_iter)
            self._profile_first_batch(trainer, pl_module, batch)
        if self._fetch is None:
            self._last_batch_end_s = time.perf_counter()
        if self._budget_per_batch and (end_s := time.perf_counter()) - self._last_budget_check_s >= BUDGET_CHECK_INTERVAL_S:
            self._last_budget_check_s = end_s
            if self.session.check_budget():
                trainer.should_stop = True

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._eval_pulls is None:
            self._eval_samples += batch_size(batch)

    def _count_pulled_training(self, data_fetcher: Any) -> None:
        """An epoch's pass begins (``FetchTimer.on_pass``: its iterator made, every epoch-start hook run): the loader's
        batching is read again where it is counted from the loop's progress; a training_step reading a dataloader_iter
        has each batch it pulls counted (``_lightning_pulled``); Lightning's progress and the batch ends count one batch a step."""
        if self._train_counted is not None:
            self._train_counted.read_batching()
        loop = self._fetch.epoch_loop if self._fetch is not None else None
        self._train_pulls = PulledBatches.install(data_fetcher, self._sizes, self._add_training, getattr(loop, "batch_progress", None))

    def _add_training(self, samples: int) -> None:
        self._epoch_samples += samples

    def _count_pulled_evaluation(self, loop: Any) -> None:
        """An evaluation's pass begins (its loop's iterator made): a step reading a dataloader_iter, likewise."""
        self._eval_pulls = PulledBatches.install(getattr(loop, "_data_fetcher", None), batch_size, self._add_evaluation,
                                                 getattr(loop, "batch_progress", None))

    def _add_evaluation(self, samples: int) -> None:
        self._eval_samples += samples

    def _settled_evaluation(self) -> int:
        """The evaluation's samples so far (a dataloader_iter step's pulls counted where the step finished)."""
        if self._eval_pulls is not None:
            self._eval_pulls.settle()
        return self._eval_samples

    def _step_out(self, trainer: Any) -> None:
        """Nothing left for the fit's later batch starts; nor for their ends where the loop's progress counts the samples."""
        if self._train_counted is None and self._train_pulls is None and not self._budget_per_batch and _own(self, "on_train_batch_end"):
            loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
            self._train_counted = CountedBatches.start(getattr(trainer, "train_dataloader", None), loop)
            if self._train_counted is not None:
                self.on_train_batch_end = None  # type: ignore[assignment]
                self._train_counting = True
        if _own(self, "on_train_batch_start"):
            self.on_train_batch_start = None  # type: ignore[assignment]

    def _count_validation(self, trainer: Any) -> None:
        """A validation beginning: its samples from its loop's progress where its loader allows (no batch end called)."""
        self._eval_pulls = None
        if self._eval_counted is None:  # counted batch by batch so far, or the fit's first validation
            fit_loop = getattr(trainer, "fit_loop", None)
            loop = getattr(getattr(fit_loop, "epoch_loop", None), "val_loop", None) if self._fitting else getattr(trainer, "validate_loop", None)
            self._count_pulled_evaluation(loop)
            if self._eval_pulls is None and _own(self, "on_validation_batch_end"):
                self._eval_counted = CountedBatches.start(getattr(trainer, "val_dataloaders", None), loop)
                if self._eval_counted is not None:
                    self.on_validation_batch_end = None  # type: ignore[assignment]
        self._eval_counting = self._eval_counted is not None
        if self._eval_counted is not None:
            self._eval_counted.begin()

    def _train_samples(self) -> int:
        """The epoch's training samples so far."""
        if self._train_pulls is not None:  # a dataloader_iter step's pulls, where the step finished
            self._train_pulls.settle()
        counted = self._train_counted
        return self._epoch_samples + (counted.samples() if counted is not None and self._train_counting else 0)

    def _fold_training(self, trainer: Any = None) -> None:
        """An epoch's end: its counted samples into its count. Its batch hooks stay out of the fit's next epochs — back
        where they were counted batch by batch (decided again at the next epoch's first batch: this one may have been
        resumed midway), and with the validation's where the loaders are reloaded (``reload_dataloaders_every_n_epochs``)."""
        self._epoch_samples, self._train_counting = self._train_samples(), False
        reloaded = bool(getattr(trainer, "reload_dataloaders_every_n_epochs", 0))
        if self._train_counted is None or reloaded:
            self._train_counted = None
            self._hooks_back("on_train_batch_start", "on_train_batch_end")
        if reloaded:
            self._eval_counted = None
            self._hooks_back("on_validation_batch_end")

    def _fold_validation(self) -> None:
        """A validation's end: its counted samples into its count (its batch end stays out of the fit's next ones)."""
        self._take_validation()
        if not self._fitting:  # trainer.validate: one pass
            self._eval_counted = None
            self._hooks_back("on_validation_batch_end")

    def _take_validation(self) -> None:
        self._settled_evaluation()
        if self._eval_counted is not None and self._eval_counting:
            self._eval_samples += self._eval_counted.samples()
        self._eval_counting = False

    def _batch_hooks_back(self) -> None:
        """Every batch hook called again (as a fit starts and however it ends); the counted samples folded in."""
        self._epoch_samples, self._train_counting, self._train_counted = self._train_samples(), False, None
        self._take_validation()
        self._eval_counted = None
        self._hooks_back(*STEPPED_OUT)

    def _hooks_back(self, *names: str) -> None:
        for name in names:
            if self.__dict__.get(name, 0) is None:
                del self.__dict__[name]


def _own(callback: Any, name: str) -> bool:
    """Whether ``name`` is ours on ``callback``: not a subclass's, nor a wrapper set on the instance."""
    return name not in callback.__dict__ and getattr(type(callback), name) is getattr(BatchHooksMixin, name)


__all__ = ["BUDGET_CHECK_INTERVAL_S", "STEPPED_OUT", "BatchHooksMixin"]
