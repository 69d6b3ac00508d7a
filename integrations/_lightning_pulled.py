"""The batches a step reading a ``dataloader_iter`` pulls, counted as it pulls them.

A ``training_step(self, dataloader_iter)`` — or ``validation_step``, ``test_step``, ``predict_step`` — fetches its
own batches, as many as it likes per call: Lightning's loop then counts a step per call, not per batch, and hands the
batch hooks only the last batch the step pulled. :class:`PulledBatches` stands in for the loop's data fetcher's
iterator (the ``dataloader_iter`` the step receives): each batch the step pulls through it is passed to ``on_batch``
(the callback adds its samples), everything else is the wrapped iterator's (``done``, ``fetched``, ``length``).
A loop whose steps take a batch has no such iterator: :meth:`PulledBatches.install` returns None and the batches are
counted as before.

Example:
    >>> class Fetcher:  # Lightning's _DataLoaderIterDataFetcher, iterated
    ...     iterator_wrapper = iter([((1, 2, 3), 0, 0), ((4, 5), 1, 0)])
    >>> seen = []
    >>> fetcher = Fetcher()
    >>> pulled = PulledBatches.install(fetcher, lambda batch: seen.append(len(batch)))
    >>> [batch for batch, _, _ in fetcher.iterator_wrapper], seen
    ([(1, 2, 3), (4, 5)], [3, 2])
    >>> PulledBatches.install(object(), print) is None
    True
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

logger = logging.getLogger(__name__)


class PulledBatches:
    """The iterator a ``dataloader_iter`` step pulls its batches through, each passed to ``on_batch`` first."""

    def __init__(self, iterator: Iterator[Any], on_batch: Callable[[Any], None]) -> None:  # noqa: D107 - see install
        self._iterator, self._on_batch = iterator, on_batch

    @classmethod
    def install(cls, data_fetcher: Any, on_batch: Callable[[Any], None]) -> PulledBatches | None:
        """Stand in for ``data_fetcher``'s ``dataloader_iter`` (as its loop begins a pass, the iterator made); None
        where it has none (the loop's steps take a batch)."""
        iterator = getattr(data_fetcher, "iterator_wrapper", None)
        if iterator is None:
            return None
        if isinstance(iterator, cls):  # a pass resumed on the same iterator: counted anew
            iterator = iterator._iterator
        pulled = cls(iterator, on_batch)
        data_fetcher.iterator_wrapper = pulled
        return pulled

    def __iter__(self) -> PulledBatches:
        return self

    def __next__(self) -> Any:
        item = next(self._iterator)  # (batch, batch_idx, dataloader_idx)
        try:
            self._on_batch(item[0])
        except Exception as exc:  # counting never breaks training
            logger.debug("mlflow-green: a pulled batch not counted: %r", exc)
        return item

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_iterator", "_on_batch"):  # copy and pickle ask before __init__ ran
            raise AttributeError(name)
        return getattr(self._iterator, name)


__all__ = ["PulledBatches"]
