"""The input of a watched Keras call, read in Python (torch, JAX): each batch timed, counted, and its errors seen.

:func:`watched_source` stands for the data iterator of the call's epoch iterator (see
:class:`~mlflow_green.integrations._keras_guard.CallGuard`): each ``next()`` is timed as input wait and
counted on the guard (over arrays, whose batching is known, the batches; else each batch's samples too); an
exception other than the input's end ends the measurement.

The iterators are generators, each batch's work written out in one frame: that work runs once per batch,
right after the framework's step has filled the processor's caches with its own, where each further
Python call of ours costs microseconds (``benchmarks/callback_overhead_keras.py`` times it in place).

Example:
    >>> class Array:
    ...     shape = (32, 64)
    >>> leading_dim((Array(), Array())), leading_dim(({"image": Array()}, None)), leading_dim(({"pair": (Array(), 1)},))
    (32, 32, 32)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from mlflow_green.integrations._keras_samples import adapter_samples
from mlflow_green.measure.signal_safety import passes_through


@passes_through
def timed_batches(inner: Iterator[Any], guard: Any, rows: bool = True,
                  perf_s: Callable[[], float] = time.perf_counter) -> Iterator[Any]:
    """``inner``'s batches, each ``next()`` timed as input wait and counted (the guard's ``batches``, and with ``rows``
    each batch's samples in ``read_samples``: not over arrays, whose samples follow from the guard's ``batching`` —
    half the work a batch, ``benchmarks/callback_overhead_keras.py``); an exception other than the input's end tells
    the guard (``abort``) and goes on."""
    while True:
        start_s = perf_s()
        try:
            batch = next(inner)
            guard.data_wait_s += perf_s() - start_s
        except StopIteration:
            return
        except BaseException as exc:  # a Ctrl-C landing after the read too: the guard ends the call KILLED
            guard.abort(exc)
            raise
        guard.batches += 1
        if rows:
            shape = getattr(batch[0] if type(batch) is tuple and batch else batch, "shape", None)  # (x, y[, w]) of arrays
            samples = shape[0] if isinstance(shape, tuple) and shape else None
            guard.read_samples += samples if type(samples) is int else leading_dim(batch)
        yield batch


@passes_through
def watched_batches(inner: Iterator[Any], guard: Any, counted: bool = False) -> Iterator[Any]:
    """``inner``'s batches; an exception other than the input's end tells the guard. ``counted``: their samples are
    added to the guard's ``test_samples`` (a fit's validation input of unknown size)."""
    while True:
        try:
            batch = next(inner)
        except StopIteration:
            return
        except BaseException as exc:
            guard.abort(exc)
            raise
        if counted:
            guard.test_samples += leading_dim(batch)
        yield batch


def watched_source(original: Callable[[], Any], guard: Any, timed: bool, epoch_iterator: Any = None,
                   reads_in_step: bool = False) -> Callable[[], Iterator[Any]] | None:
    """The epoch iterator's ``_get_iterator`` whose iterators are watched (``guard``: the ``CallGuard``): timed and
    counted (``timed``: the training input, :func:`timed_batches`, each batch's rows only where the guard does not know
    the input's ``batching``); else watched for errors, and counted where the input is a fit's validation whose data
    adapter does not know its size (:func:`watched_batches`). None where nothing is left to do: an input of known size
    that the backend reads inside the guarded step function (``reads_in_step``, JAX), which sees its errors."""
    if timed:
        rows = guard.batching is None
        return lambda: timed_batches(iter(original()), guard, rows)
    counted = epoch_iterator is not None and adapter_samples(epoch_iterator) is None
    if reads_in_step and not counted:
        return None
    return lambda: watched_batches(iter(original()), guard, counted)


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


def reads_input_in_step() -> bool:
    """True on JAX, whose step functions take the data iterator and call ``next()`` on it themselves (torch's fit
    reads each batch before calling its step)."""
    import keras

    return keras.backend.backend() == "jax"


__all__ = ["end_of_data", "leading_dim", "reads_input_in_python", "reads_input_in_step", "timed_batches", "watched_batches",
           "watched_source"]
