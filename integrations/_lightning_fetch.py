"""The training loop's input wait in a Lightning fit: the time spent inside its data fetcher.

Lightning's data fetcher calls two hooks around every fetch from the DataLoader — ``_start_profiler`` and
``_stop_profiler``, which the training epoch loop sets to its own ``_on_before_fetch`` / ``_on_after_fetch`` (its
profiler's ``train_dataloader_next`` action) in ``on_run_start``, where it also creates the epoch's DataLoader
iterator (and starts its worker processes unless they persist). :class:`FetchTimer` wraps the loop's
``on_run_start`` for the length of the fit: the iterator's creation is input wait, and so is the time inside each
fetch — the fetcher's two hooks are the timer's own from then on (which call the loop's where a profiler records
them; Lightning's default ``PassThroughProfiler`` records nothing, and is not called). Other callbacks' batch hooks,
a checkpoint saved every step, a logger's writes or the module's ``on_train_epoch_start`` between two batches are the
training's work, not input wait.

:attr:`FetchTimer.on_pass`, where set, is called with the data fetcher as each epoch's pass begins (its iterator made):
the callback counts the batches a ``training_step`` reading a ``dataloader_iter`` pulls (``_lightning_pulled``).

Where the loop does not have these (another Lightning version), :meth:`FetchTimer.install` returns None and
the callback falls back to the time between a batch's end and the next batch's start.

Example:
    >>> class Fetcher:
    ...     _start_profiler = _stop_profiler = None
    >>> class EpochLoop:
    ...     def _on_before_fetch(self): pass
    ...     def _on_after_fetch(self): pass
    ...     def on_run_start(self, data_fetcher):
    ...         data_fetcher._start_profiler, data_fetcher._stop_profiler = self._on_before_fetch, self._on_after_fetch
    >>> class Trainer:
    ...     fit_loop = type("FitLoop", (), {"epoch_loop": EpochLoop()})()
    >>> timer, fetcher = FetchTimer.install(Trainer()), Fetcher()
    >>> timer.epoch_loop.on_run_start(fetcher)          # as an epoch starts
    >>> fetcher._start_profiler(); fetcher._stop_profiler()  # a fetch
    >>> timer.take_s() >= 0.0
    True
    >>> timer.remove()
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any

logger = logging.getLogger(__name__)

WRAPPED = ("_on_before_fetch", "_on_after_fetch", "on_run_start")


class FetchTimer:
    """Seconds the fit's training loop spent fetching input (see the module docstring)."""

    def __init__(self, epoch_loop: Any, profiled: bool) -> None:  # noqa: D107 - see install
        self.epoch_loop = epoch_loop
        self.profiled = profiled  # the loop's fetch hooks record something: call them too
        self.waited_s = 0.0
        self._started_s = perf_counter()
        self._loop_run_start = epoch_loop.on_run_start
        self._fetcher: Any = None
        self._loop_hooks: tuple[Any, Any] = (None, None)  # the fetcher's hooks as the loop set them
        self.on_pass: Callable[[Any], None] | None = None  # called with the data fetcher as each epoch's pass begins

    @classmethod
    def install(cls, trainer: Any) -> FetchTimer | None:
        """Time the fetches of ``trainer``'s training epoch loop; None where it has not got the hooks."""
        epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
        if epoch_loop is None or not all(callable(getattr(type(epoch_loop), name, None)) for name in WRAPPED):
            return None
        quiet = (type(getattr(trainer, "profiler", None)).__name__ == "PassThroughProfiler"
                 and type(epoch_loop).__name__ == "_TrainingEpochLoop")  # Lightning's own hooks, recording nothing
        timer = cls(epoch_loop, profiled=not quiet)
        epoch_loop.on_run_start = timer._run_start
        return timer

    def take_s(self) -> float:
        """The input wait since the last call (a fetch in progress is counted when it ends)."""
        waited_s, self.waited_s = self.waited_s, 0.0
        return waited_s

    def remove(self) -> None:
        """Give the epoch loop and its data fetcher their own hooks back."""
        if self.epoch_loop.__dict__.get("on_run_start") == self._run_start:
            del self.epoch_loop.__dict__["on_run_start"]
        fetcher, (before, after) = self._fetcher, self._loop_hooks
        if fetcher is not None and getattr(fetcher, "_start_profiler", None) in (self._before, self._before_profiled):
            fetcher._start_profiler, fetcher._stop_profiler = before, after
        self._fetcher = None

    def _run_start(self, data_fetcher: Any, *args: Any, **kwargs: Any) -> Any:
        """The loop's ``on_run_start``: the epoch's iterator created (input wait, once: a batch prefetched meanwhile
        included), then the fetcher's hooks timed."""
        started_s, waited_s = perf_counter(), self.waited_s
        try:
            return self._loop_run_start(data_fetcher, *args, **kwargs)
        finally:
            self.waited_s = waited_s + perf_counter() - started_s
            before, after = getattr(data_fetcher, "_start_profiler", None), getattr(data_fetcher, "_stop_profiler", None)
            if callable(before) and callable(after) and before not in (self._before, self._before_profiled):
                self._fetcher, self._loop_hooks = data_fetcher, (before, after)
                own = before == self.epoch_loop._on_before_fetch and after == self.epoch_loop._on_after_fetch
                if self.profiled or not own:
                    data_fetcher._start_profiler, data_fetcher._stop_profiler = self._before_profiled, self._after_profiled
                else:
                    data_fetcher._start_profiler, data_fetcher._stop_profiler = self._before, self._after
            if self.on_pass is not None:
                try:
                    self.on_pass(data_fetcher)
                except Exception as exc:  # measurement never breaks training
                    logger.debug("mlflow-green: a pass's start not seen: %r", exc)

    def _before(self) -> None:
        self._started_s = perf_counter()

    def _after(self) -> None:
        self.waited_s += perf_counter() - self._started_s

    def _before_profiled(self) -> None:
        self._started_s = perf_counter()
        self._loop_hooks[0]()

    def _after_profiled(self) -> None:
        try:
            self._loop_hooks[1]()
        finally:
            self.waited_s += perf_counter() - self._started_s


__all__ = ["FetchTimer"]
