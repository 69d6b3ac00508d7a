"""The training loop's input wait in a Lightning fit: the time spent inside its data fetcher.

Lightning's training epoch loop calls two hooks of its own around every fetch from the DataLoader (its
profiler's ``train_dataloader_next`` action): ``_on_before_fetch`` and ``_on_after_fetch``, handed to the
data fetcher as the epoch starts (``on_run_start``, which also creates the epoch's DataLoader iterator —
and starts its worker processes unless they persist). :class:`FetchTimer` wraps these on the fit's epoch
loop instance, for the length of the fit: the input wait is the time inside them, and nothing else. Other
callbacks' batch hooks, a checkpoint saved every step, a logger's writes or the module's
``on_train_epoch_start`` between two batches are the training's work, not input wait.

Where the loop does not have these (another Lightning version), :meth:`FetchTimer.install` returns None and
the callback falls back to the time between a batch's end and the next batch's start.

Example:
    >>> class EpochLoop:
    ...     def _on_before_fetch(self): pass
    ...     def _on_after_fetch(self): pass
    ...     def on_run_start(self, data_fetcher): pass
    >>> class Trainer:
    ...     fit_loop = type("FitLoop", (), {"epoch_loop": EpochLoop()})()
    >>> timer = FetchTimer.install(Trainer())
    >>> timer.epoch_loop._on_before_fetch(); timer.epoch_loop._on_after_fetch()
    >>> timer.take_s() >= 0.0
    True
    >>> timer.remove()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

WRAPPED = ("_on_before_fetch", "_on_after_fetch", "on_run_start")


class FetchTimer:
    """Seconds the fit's training loop spent fetching input (see the module docstring)."""

    def __init__(self, epoch_loop: Any) -> None:  # noqa: D107 - see install
        self.epoch_loop = epoch_loop
        self.waited_s = 0.0
        self.fetch_started_s: float | None = None

    @classmethod
    def install(cls, trainer: Any) -> FetchTimer | None:
        """Wrap the hooks of ``trainer``'s training epoch loop; None where it has not got them."""
        epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
        if epoch_loop is None or not all(callable(getattr(type(epoch_loop), name, None)) for name in WRAPPED):
            return None
        timer = cls(epoch_loop)
        for name in WRAPPED:
            setattr(epoch_loop, name, _Timed(timer, getattr(epoch_loop, name), name))
        return timer

    def take_s(self) -> float:
        """The input wait since the last call (a fetch in progress is counted when it ends)."""
        waited_s, self.waited_s = self.waited_s, 0.0
        return waited_s

    def remove(self) -> None:
        """Give the epoch loop its own hooks back."""
        for name in WRAPPED:
            current = self.epoch_loop.__dict__.get(name)
            if isinstance(current, _Timed) and current.timer is self:
                del self.epoch_loop.__dict__[name]


class _Timed:
    """One wrapped hook (a class, not a closure: a trainer copied or pickled meanwhile stays picklable)."""

    def __init__(self, timer: FetchTimer, original: Callable[..., Any], name: str) -> None:
        self.timer, self.original, self.name = timer, original, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        timer = self.timer
        if self.name == "_on_before_fetch":
            timer.fetch_started_s = time.perf_counter()
            return self.original(*args, **kwargs)
        if self.name == "_on_after_fetch":
            started_s, timer.fetch_started_s = timer.fetch_started_s, None
            if started_s is not None:
                timer.waited_s += time.perf_counter() - started_s
            return self.original(*args, **kwargs)
        started_s = time.perf_counter()  # on_run_start: the epoch's DataLoader iterator is created
        try:
            return self.original(*args, **kwargs)
        finally:
            timer.waited_s += time.perf_counter() - started_s


__all__ = ["FetchTimer"]
