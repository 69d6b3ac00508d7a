"""The batches a step reading a ``dataloader_iter`` pulls, counted once that step has finished.

A ``training_step(self, dataloader_iter)`` — or ``validation_step``, ``test_step``, ``predict_step`` — fetches its
own batches, as many as it likes per call: Lightning's loop then counts a step per call, not per batch, and hands the
batch hooks only the last batch the step pulled. :class:`PulledBatches` stands in for the loop's data fetcher's
iterator (the ``dataloader_iter`` the step receives) and notes each batch's samples as the step pulls it; they are
added (``add``) once the loop's progress counts that step processed — the batches of a step that raises, or that a
``next()`` ending the epoch cuts short, are not, as a batch-taking step's that raises is not. Everything else is the
wrapped iterator's (``done``, ``fetched``, ``length``). A loop whose steps take a batch has no such iterator:
:meth:`PulledBatches.install` returns None and the batches are counted as before.

Example:
    >>> class Fetcher:  # Lightning's _DataLoaderIterDataFetcher, iterated
    ...     iterator_wrapper = iter([((1, 2, 3), 0, 0), ((4, 5), 1, 0), ((6,), 2, 0)])
    >>> progress = type("Progress", (), {"total": type("Total", (), {"processed": 0})()})()
    >>> added, fetcher = [], Fetcher()
    >>> pulled = PulledBatches.install(fetcher, len, added.append, progress)
    >>> _ = next(fetcher.iterator_wrapper), next(fetcher.iterator_wrapper)  # one step pulls two batches
    >>> progress.total.processed = 1  # ... and returns
    >>> _ = next(fetcher.iterator_wrapper)  # the next step pulls one, then raises
    >>> pulled.settle(); added
    [5]
    >>> PulledBatches.install(object(), len, print, None) is None
    True
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

logger = logging.getLogger(__name__)


class PulledBatches:
    """The iterator a ``dataloader_iter`` step pulls its batches through (see the module docstring)."""

    def __init__(self, iterator: Iterator[Any], size_of: Callable[[Any], int], add: Callable[[int], None],
                 progress: Any) -> None:  # noqa: D107 - see install
        self._iterator, self._size_of, self._add, self._progress = iterator, size_of, add, progress
        self._pending: list[int] = []  # the samples of the batches the step in progress pulled
        self._steps: int | None = None  # the loop's processed steps as that step pulled its first

    @classmethod
    def install(cls, data_fetcher: Any, size_of: Callable[[Any], int], add: Callable[[int], None],
                progress: Any) -> PulledBatches | None:
        """Stand in for ``data_fetcher``'s ``dataloader_iter`` (as its loop begins a pass, the iterator made), the
        loop's ``batch_progress`` telling when a step finished (None: each batch added as it is pulled); None where it
        has none (the loop's steps take a batch)."""
        iterator = getattr(data_fetcher, "iterator_wrapper", None)
        if iterator is None:
            return None
        if isinstance(iterator, cls):  # a pass resumed on the same iterator: counted anew
            iterator = iterator._iterator
        pulled = cls(iterator, size_of, add, progress)
        data_fetcher.iterator_wrapper = pulled
        return pulled

    def settle(self) -> None:
        """Add the pulled batches of a step that has finished since it pulled them."""
        if self._pending and (self._progress is None or self._processed() != self._steps):
            pending, self._pending = self._pending, []
            self._add(sum(pending))

    def __iter__(self) -> PulledBatches:
        return self

    def __next__(self) -> Any:
        item = next(self._iterator)  # (batch, batch_idx, dataloader_idx)
        try:
            self.settle()  # the previous step's, if it finished
            if not self._pending:
                self._steps = self._processed()
            self._pending.append(self._size_of(item[0]))
            if self._progress is None:
                self.settle()
        except Exception as exc:  # counting never breaks training
            logger.debug("mlflow-green: a pulled batch not counted: %r", exc)
        return item

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_iterator", "_size_of", "_add", "_progress", "_pending", "_steps"):
            raise AttributeError(name)  # copy and pickle ask before __init__ ran
        return getattr(self._iterator, name)

    def _processed(self) -> int | None:
        return getattr(getattr(self._progress, "total", None), "processed", None)


__all__ = ["PulledBatches"]
