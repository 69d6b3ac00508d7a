"""Cutting the data into batches of one size, before any window opens (so slicing is not measured).

Works on anything with rows: NumPy arrays, pandas DataFrames and Series, torch tensors, lists
and tuples, and dicts of those (several named inputs). No framework is imported: each kind is
recognised by what it offers (``iloc``, ``shape``, ``__getitem__``).

Every batch holds exactly ``batch_size`` rows: the data is read in order and wraps around at
the end, so a batch size larger than the data repeats rows. At most :data:`MAX_DISTINCT_BATCHES`
distinct batches are prepared; the measurement cycles through them.

Example:
    >>> import numpy as np
    >>> batches = make_batches(np.arange(10).reshape(5, 2), 2)
    >>> [b[:, 0].tolist() for b in batches]
    [[0, 2], [4, 6], [8, 0]]
    >>> row_count([])
    0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mlflow_green.errors import ConfigError

MAX_DISTINCT_BATCHES = 1024


def row_count(data: Any) -> int:
    """Number of rows (predictions one pass makes); raises ConfigError for data without rows."""
    if isinstance(data, Mapping):
        if not data:
            return 0
        counts = {key: row_count(value) for key, value in data.items()}
        if len(set(counts.values())) > 1:
            raise ConfigError(f"every input of a dict must have the same number of rows, got {counts}")
        return next(iter(counts.values()))
    shape = getattr(data, "shape", None)
    if shape is not None and not isinstance(data, (str, bytes)):
        if len(shape) == 0:
            raise ConfigError(f"data must have rows (one per prediction), got a scalar {type(data).__name__}")
        return int(shape[0])
    if isinstance(data, (str, bytes)) or not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
        raise ConfigError(
            "data must have rows: a NumPy array, a pandas DataFrame, a torch tensor, a list, or a dict of "
            f"those; got {type(data).__name__}"
        )
    return len(data)


def make_batches(data: Any, batch_size: int, *, max_batches: int = MAX_DISTINCT_BATCHES) -> list[Any]:
    """The distinct batches of ``batch_size`` rows one pass over ``data`` makes (wrapping at the end)."""
    rows = row_count(data)
    if rows == 0:
        raise ConfigError("data is empty: there is nothing to predict, so no energy per prediction to measure")
    count = min(-(-rows // batch_size), max_batches)
    return [_take(data, _indices(start * batch_size, batch_size, rows)) for start in range(count)]


def _indices(first: int, size: int, rows: int) -> list[int]:
    return [(first + i) % rows for i in range(size)]


def _take(data: Any, indices: list[int]) -> Any:
    """Rows ``indices`` of ``data``, in the same kind of container; contiguous runs are sliced."""
    if isinstance(data, Mapping):
        return {key: _take(value, indices) for key, value in data.items()}
    contiguous = indices == list(range(indices[0], indices[0] + len(indices)))
    iloc = getattr(data, "iloc", None)
    if iloc is not None:  # pandas: positional, not by label
        return iloc[indices[0] : indices[-1] + 1] if contiguous else iloc[indices]
    if contiguous:
        return data[indices[0] : indices[-1] + 1]
    if isinstance(data, (list, tuple)):
        return type(data)(data[i] for i in indices)
    if hasattr(data, "shape"):  # NumPy and torch accept an index list; TensorFlow tensors need gather
        try:
            return data[indices]
        except (TypeError, IndexError, ValueError):
            pass
        parts = [data[i : i + 1] for i in indices]
        concat = _concatenate(data)
        if concat is not None:
            return concat(parts)
    if isinstance(data, Sequence):
        return [data[i] for i in indices]
    raise ConfigError(f"cannot cut {type(data).__name__} into batches; pass a NumPy array, DataFrame, tensor or list")


def _concatenate(data: Any) -> Any:
    module = type(data).__module__.split(".")[0]
    if module == "tensorflow":
        import sys

        return lambda parts: sys.modules["tensorflow"].concat(parts, axis=0)
    return None
