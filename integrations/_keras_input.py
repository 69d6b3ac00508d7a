"""The input of a watched Keras call, read in Python (torch, JAX): each batch timed, counted, and its errors seen.

:class:`WatchedIterator` stands for the data iterator of the call's epoch iterator (see
:class:`~mlflow_green.integrations._keras_guard.CallGuard`): each ``next()`` is timed as input wait and
its batch's samples counted on the guard; an exception other than the input's end ends the measurement.

Example:
    >>> class Array:
    ...     shape = (32, 64)
    >>> leading_dim((Array(), Array())), leading_dim(({"image": Array()}, None)), leading_dim(({"pair": (Array(), 1)},))
    (32, 32, 32)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mlflow_green.integrations._keras_samples import adapter_samples
from mlflow_green.measure.signal_safety import passes_through


class WatchedIterator:
    """A data iterator watched for errors; when ``timed``, each ``next()`` is timed (input wait) and counted (the
    guard's ``batches`` and ``samples``); when ``counted`` alone (a fit's validation input of unknown size), its batches'
    samples are added to the guard's ``test_samples``."""

    __slots__ = ("_inner", "_guard", "_timed", "_counted")

    def __init__(self, inner: Any, guard: Any, timed: bool, counted: bool = False) -> None:
        self._inner = inner
        self._guard = guard
        self._timed = timed
        self._counted = counted and not timed

    def __iter__(self) -> WatchedIterator:
        return self

    @passes_through
    def __next__(self) -> Any:
        start_s = time.perf_counter()
        try:
            batch = next(self._inner)
        except StopIteration:
            raise
        except BaseException as exc:
            self._guard.abort(exc)
            raise
        if self._timed:
            guard = self._guard
            guard.data_wait_s += time.perf_counter() - start_s
            guard.batches += 1
            guard.samples += leading_dim(batch)
        elif self._counted:
            self._guard.test_samples += leading_dim(batch)
        return batch

    def __getattr__(self, name: str) -> Any:  # e.g. a DataLoader iterator's attributes
        return getattr(self._inner, name)


def watched_source(original: Callable[[], Any], guard: Any, timed: bool, epoch_iterator: Any = None) -> Callable[[], Any]:
    """The epoch iterator's ``_get_iterator`` whose iterators are :class:`WatchedIterator` (``guard``: the ``CallGuard``);
    a fit's validation input (not ``timed``) is counted where its data adapter does not know its size."""
    counted = not timed and epoch_iterator is not None and adapter_samples(epoch_iterator) is None

    def source() -> Any:
        return WatchedIterator(iter(original()), guard, timed, counted)

    return source


def end_of_data(exc: BaseException) -> bool:
    """The input's end signalled inside a step (``StopIteration``; TensorFlow's ``OutOfRangeError``):
    Keras catches it, warns that the input ran out, ends the epoch and goes on — not a failure."""
    return isinstance(exc, StopIteration) or any(c.__name__ == "OutOfRangeError" for c in type(exc).__mro__)


def leading_dim(batch: Any) -> int:
    """Samples in a batch ``(x, y[, w])``: the first dimension of its first array, however nested (``{"pair": (a, b)}``)."""
    first = batch
    for _ in range(32):  # a structure nested deeper holds no array Keras would batch
        if isinstance(first, (tuple, list)) and first:
            first = first[0]
        elif isinstance(first, dict) and first:
            first = next(iter(first.values()))
        else:
            break
    shape = getattr(first, "shape", None)
    try:
        return int(shape[0]) if shape else 0
    except (TypeError, ValueError, IndexError):
        return 0


def reads_input_in_python() -> bool:
    """True on backends that read each batch in Python (torch, JAX): input waits can be timed."""
    import keras

    return keras.backend.backend() in ("torch", "jax")


__all__ = ["WatchedIterator", "end_of_data", "watched_source", "leading_dim", "reads_input_in_python"]
