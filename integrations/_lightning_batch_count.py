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

KNOWN_SAMPLERS = (SequentialSampler, RandomSampler, SubsetRandomSampler, WeightedRandomSampler, DistributedSampler)
"""torch's samplers, which yield exactly their length in indices an epoch (a sampler of your own is not relied on)."""


class LoaderBatches:
    """How one DataLoader batches an epoch: the samples in its first ``n`` batches (:meth:`samples`)."""

    def __init__(self, batch_size: int, sampler: Any, drop_last: bool) -> None:  # noqa: D107 - see of
        self.batch_size, self.sampler, self.drop_last = batch_size, sampler, drop_last

    def __repr__(self) -> str:
        return f"LoaderBatches(batch_size={self.batch_size}, samples_per_epoch={len(self.sampler)}, drop_last={self.drop_last})"

    @classmethod
    def of(cls, loaders: Any) -> LoaderBatches | None:
        """``loaders``'s batching where it follows from the loader alone (see the module docstring), else None."""
        if type(loaders) is not DataLoader or isinstance(loaders.dataset, IterableDataset):
            return None
        batches = loaders.batch_sampler
        if type(batches) is not BatchSampler or loaders.collate_fn is not default_collate:
            return None
        if type(batches.sampler) not in KNOWN_SAMPLERS:
            return None
        size = batches.batch_size
        try:
            per_epoch = len(batches.sampler)
        except (TypeError, NotImplementedError):  # a sampler without a length (as Lightning's has_len takes it)
            return None
        if type(size) is not int or size <= 0 or type(per_epoch) is not int or per_epoch < 0:
            return None
        return cls(size, batches.sampler, bool(batches.drop_last))

    def samples(self, batches: int) -> int:
        """The samples in an epoch's first ``batches`` batches (the sampler's length read at each call where the last
        of them may be short: a dataset's length may change between epochs)."""
        full = max(batches, 0) * self.batch_size
        return full if self.drop_last or full < self.batch_size else min(full, len(self.sampler))


class CountedBatches:
    """The samples of the batches a loop has processed in its current pass over ``batches``'s loader.

    ``progress`` is the loop's ``batch_progress`` (Lightning's counters: ``current.processed`` is incremented
    as each batch's step returns, before the callbacks' ``on_*_batch_end``; ``current`` is reset as each pass — an
    epoch, a validation — begins, but for the first after a checkpoint's restore midway).
    """

    def __init__(self, batches: LoaderBatches, progress: Any) -> None:  # noqa: D107 - see the class
        self.batches, self.progress = batches, progress

    @classmethod
    def start(cls, loaders: Any, loop: Any) -> CountedBatches | None:
        """Counted from ``loop``'s progress as a pass over ``loaders`` begins (None: counted batch by batch — another
        input, a Lightning without the counters, or a pass resumed midway). Valid for the loop's later passes over the
        same loaders."""
        batches = LoaderBatches.of(loaders)
        progress = getattr(loop, "batch_progress", None)
        current = getattr(progress, "current", None)
        if batches is None or getattr(current, "processed", None) != 0:
            return None
        return cls(batches, progress)

    def samples(self) -> int:
        """The samples processed so far in the loop's current pass."""
        return self.batches.samples(self.progress.current.processed)


__all__ = ["CountedBatches", "LoaderBatches"]
