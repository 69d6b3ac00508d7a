"""The samples of a Lightning loop's batches, counted without looking at a batch.

A plain torch ``DataLoader`` over a map-style dataset, batched by torch's ``BatchSampler`` over one of torch's
samplers (sequential, random, subset, weighted, distributed) and collated by ``default_collate``, gives ``batch_size`` samples in every batch of an epoch but the last (what is left of the
sampler's length, unless ``drop_last``). The samples of the batches a loop has trained on then follow from how
many it has processed — Lightning's own progress counter — and the callback needs no call at each batch to count
them (:class:`CountedBatches`). Any other input (an ``IterableDataset``, a sampler, batch sampler or ``collate_fn``
of your own, a DataLoader subclass, several loaders combined) is counted batch by batch, from the tensors of each batch.

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> batches = LoaderBatches.of(DataLoader(TensorDataset(torch.zeros(70, 3)), batch_size=32))
    >>> batches, [batches.samples(n) for n in (0, 1, 2, 3)]
    (LoaderBatches(batch_size=32, samples_per_epoch=70, drop_last=False), [0, 32, 64, 70])
    >>> LoaderBatches.of(DataLoader(TensorDataset(torch.zeros(70, 3)), batch_size=32, collate_fn=lambda b: b)) is None
    True
"""

from __future__ import annotations

import logging
from typing import Any

from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
    default_collate,
)

logger = logging.getLogger(__name__)

KNOWN_SAMPLERS = (SequentialSampler, RandomSampler, SubsetRandomSampler, WeightedRandomSampler, DistributedSampler)
"""torch's samplers, which yield exactly their length in indices an epoch (a sampler of your own is not relied on)."""


class LoaderBatches:
    """How one DataLoader batches a pass over it, as read when the pass began: the samples in its first ``n`` batches
    (:meth:`samples`). A pass's sampler takes its length as the pass's iteration begins, so a dataset resized later in
    the epoch (a callback pruning it at the epoch's end, before ours counts) does not change the pass's batches."""

    def __init__(self, batch_size: int, samples_per_epoch: int, drop_last: bool, batch_sampler: Any = None) -> None:  # noqa: D107
        self.batch_size, self.samples_per_epoch, self.drop_last = batch_size, samples_per_epoch, drop_last
        self._batch_sampler = batch_sampler

    def __repr__(self) -> str:
        return f"LoaderBatches(batch_size={self.batch_size}, samples_per_epoch={self.samples_per_epoch}, drop_last={self.drop_last})"

    @classmethod
    def of(cls, loaders: Any) -> LoaderBatches | None:
        """``loaders``'s batching where it follows from the loader alone (see the module docstring), else None."""
        if type(loaders) is not DataLoader or isinstance(loaders.dataset, IterableDataset):
            return None
        if loaders.collate_fn is not default_collate:
            return None
        return cls._read(loaders.batch_sampler)

    def again(self) -> LoaderBatches | None:
        """The same loader's batching read now, as a later pass over it begins (its dataset's length, or its batch
        size, may have changed since the last; None: it no longer follows from the loader)."""
        return self._read(self._batch_sampler)

    @classmethod
    def _read(cls, batches: Any) -> LoaderBatches | None:
        if type(batches) is not BatchSampler or type(batches.sampler) not in KNOWN_SAMPLERS:
            return None
        size = batches.batch_size
        try:
            per_epoch = len(batches.sampler)
        except (TypeError, NotImplementedError):  # a sampler without a length (as Lightning's has_len takes it)
            return None
        if type(size) is not int or size <= 0 or type(per_epoch) is not int or per_epoch < 0:
            return None
        return cls(size, per_epoch, bool(batches.drop_last), batches)

    def samples(self, batches: int) -> int:
        """The samples in the pass's first ``batches`` batches."""
        full = max(batches, 0) * self.batch_size
        return full if self.drop_last or full < self.batch_size else min(full, self.samples_per_epoch)


class CountedBatches:
    """The samples of the batches a loop has trained on in its current pass over ``batches``'s loader.

    ``progress`` is the loop's ``batch_progress``: Lightning's counters, whose ``total`` only grows through a fit. A
    batch's step has run when both ``started`` (incremented as the step begins) and ``processed`` (as it returns, before
    the callbacks' ``on_*_batch_end``) count it: a batch the module's ``on_train_batch_start`` skips (``-1``, which ends
    the epoch) is ``processed`` without being ``started``, one whose step raises is ``started`` only. The pass's
    batches are counted from the totals at :meth:`begin` — not from the ``current`` counters, which the training loop
    resets only after the callbacks' ``on_train_epoch_start`` (until then they hold the previous epoch's).
    """

    def __init__(self, batches: LoaderBatches, progress: Any) -> None:  # noqa: D107 - see the class
        self.batches, self.progress, self.pass_batches = batches, progress, batches
        self._said = False
        self._started = self._processed = 0
        self.begin()

    @classmethod
    def start(cls, loaders: Any, loop: Any) -> CountedBatches | None:
        """Counted from ``loop``'s progress as a pass over ``loaders`` begins (None: counted batch by batch — another
        input, a Lightning without the counters, or a pass resumed midway). Valid for the loop's later passes over the
        same loaders, each begun with :meth:`begin`."""
        batches = LoaderBatches.of(loaders)
        progress = getattr(loop, "batch_progress", None)
        current, total = getattr(progress, "current", None), getattr(progress, "total", None)
        if batches is None or getattr(current, "processed", None) != 0:
            return None
        if not all(type(getattr(total, name, None)) is int for name in ("started", "processed")):
            return None
        return cls(batches, progress)

    def begin(self) -> None:
        """A pass begins (an epoch, a validation): its batches are those whose steps run from now on, batched as the
        loader batches now (its batch size and its sampler's length read again)."""
        total = self.progress.total
        self._started, self._processed = total.started, total.processed
        self.read_batching()

    def read_batching(self) -> None:
        """The loader's batching read again: at :meth:`begin`, and as the pass's iterator is made (after the epoch-start
        hooks of the module and of the callbacks listed after ours, which may resize or rebatch it — a curriculum)."""
        now = self.batches.again()
        if now is None and not self._said:  # a sampler of the user's own set on the loader's batch sampler since the
            self._said = True  # fit began (said once)
            logger.warning("mlflow-green: a DataLoader's batching no longer follows from it (its sampler or batch size "
                           "was replaced during the fit): its samples are counted as batched before")
        self.pass_batches = now or self.pass_batches

    def samples(self) -> int:
        """The samples of the batches whose steps have run since :meth:`begin`."""
        total = self.progress.total
        return self.pass_batches.samples(min(total.started - self._started, total.processed - self._processed))


__all__ = ["CountedBatches", "LoaderBatches"]
