"""What the Lightning callback reads from batches: sizes, and a model's example input.

Example:
    >>> import torch
    >>> batch = (torch.zeros(8, 64), torch.zeros(8, dtype=torch.long))
    >>> batch_size(batch)
    8
    >>> example_of(torch.nn.Linear(64, 10).forward, batch).shape
    torch.Size([1, 64])
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import torch

from mlflow_green.training.quality import finite_number
from mlflow_green.training.quality import finite_numbers as floats  # noqa: F401 - the integrations' name


def inputs_of(batch: Any) -> Any:
    """The model inputs of a batch: ``x`` of ``(x, y)``, a tensor, or the first value of a dict."""
    if isinstance(batch, (list, tuple)) and batch:
        return batch[0]
    if isinstance(batch, Mapping) and batch:
        return next(iter(batch.values()))
    return batch


def batch_size(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor of one dimension or more (0 when unknown).

    Inputs of several tensors (``([x1, x2], y)``, ``({"a": xa, "b": xb}, y)``) count samples, not
    inputs; a 0-d tensor beside them (a count, an index) is passed over; a list of strings or numbers
    (texts) is a batch of its length; a dataclass's fields are looked through as a tuple's items.

    Example:
        >>> import torch
        >>> batch_size(({"a": torch.zeros(4, 3), "b": torch.zeros(4, 5)}, torch.zeros(4)))
        4
        >>> batch_size((torch.tensor(7), [torch.zeros(6, 2)])), batch_size((["a text", "another"], None))
        (6, 2)
    """
    first = batch[0] if type(batch) is tuple or type(batch) is list else batch  # the usual (x, y): one lookup
    shape = getattr(first, "shape", None)
    if shape is not None and len(shape) > 0 and type(shape[0]) is int and shape[0] > 0:
        return shape[0]
    return _leading_size(batch)


def _leading_size(batch: Any) -> int:
    shape = getattr(batch, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) > 0 and isinstance(shape[0], numbers.Integral) else 0
    if isinstance(batch, (list, tuple)):
        items: Any = batch
    elif isinstance(batch, Mapping):
        items = batch.values()
    elif dataclasses.is_dataclass(batch) and not isinstance(batch, type):  # a batch class of its own (Lightning allows them)
        items = [getattr(batch, f.name, None) for f in dataclasses.fields(batch)]
    else:
        return 0
    scalars = 0
    for item in items:
        size = _leading_size(item)
        if size:
            return size
        if isinstance(item, (str, bytes, numbers.Number)):
            scalars += 1
    return len(batch) if scalars and scalars == len(items) and isinstance(batch, (list, tuple)) else 0


def positional_arity(forward: Callable[..., Any]) -> int:
    """How many positional arguments ``forward`` requires (1 when it cannot be told)."""
    try:
        params = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return max(sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty), 1)


def combined_loaders(trainer: Any) -> bool:
    """True when the fit's training batches hold several loaders' batches: a ``CombinedLoader`` (or a dict / list of
    loaders given to ``fit``, which Lightning combines) in a mode other than ``"sequential"`` — each batch then a dict
    or list of the loaders' own batches, of different samples (see :func:`combined_batch_size`)."""
    try:
        combined = trainer.fit_loop._combined_loader
        return combined is not None and len(combined.flattened) > 1 and combined._mode != "sequential"
    except (AttributeError, TypeError):
        return False


def combined_batch_size(batch: Any) -> int:
    """Samples in a batch of several loaders' batches (``{"a": (xa, ya), "b": (xb, yb)}``): the sum of theirs (a
    loader run out in ``max_size`` mode gives None: 0).

    Example:
        >>> import torch
        >>> combined_batch_size({"a": (torch.zeros(64, 3), torch.zeros(64)), "b": [torch.zeros(32, 3), None]})
        96
    """
    items = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else [batch]
    return sum(batch_size(item) for item in items if item is not None)


def first_loaders_batch(batch: Any) -> Any:
    """The first loader's batch of a combined batch (the one profiled for FLOPs)."""
    if isinstance(batch, Mapping):
        return next(iter(batch.values()), batch)
    return batch[0] if isinstance(batch, (list, tuple)) and batch else batch


def same_batch(batch: Any) -> Any:
    """The batch itself (one loader's: the one profiled for FLOPs)."""
    return batch


def training_batches(trainer: Any) -> tuple[Callable[[Any], int], Callable[[Any], Any]]:
    """How the fit's training batches count: (samples in a batch, the batch to profile for FLOPs) — one loader's,
    or several loaders' combined (:func:`combined_loaders`)."""
    return (combined_batch_size, first_loaders_batch) if combined_loaders(trainer) else (batch_size, same_batch)


def example_of(forward: Callable[..., Any], batch: Any) -> Any:
    """A one-sample example input for ``forward`` from a training batch (a detached copy).

    ``forward(x)`` gets ``x`` of ``(x, y)``; a forward taking two or more arguments
    (``forward(inputs, target)``, as Lightning's demo Transformer) gets that many leading
    elements of the batch as a tuple (positional arguments); a dict batch is keyword arguments
    when ``forward`` takes no positional argument beyond it — the keys it names (``{"x", "y"}`` for
    ``forward(x)``: ``x`` alone), every key if it takes ``**kwargs``.
    """
    arity = positional_arity(forward)
    keywords = _keywords_for(forward, batch) if isinstance(batch, Mapping) else None
    if isinstance(batch, (list, tuple)) and arity >= 2 and len(batch) >= arity:
        example: Any = tuple(batch[:arity])
    elif keywords:
        example = keywords
    else:
        example = inputs_of(batch)
    return _one_sample(example, batch_size(batch))


def epoch_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an epoch's metrics for its accounting: CPU tensors and numbers as they are (read later, off the
    training thread), a tensor on any other device read now (an accelerator's tensor is read on the thread that ran
    its work: MPS does not take reads from two threads, nor a CUDA graph capture a sync from another).

    Example:
        >>> epoch_metrics({"val_acc": torch.tensor(0.5), "note": "x"})
        {'val_acc': tensor(0.5000), 'note': 'x'}
    """
    return {key: value if getattr(value, "is_cpu", True) else finite_number(value) for key, value in metrics.items()}


def _keywords_for(forward: Callable[..., Any], batch: Mapping[str, Any]) -> dict[str, Any] | None:
    """The keyword arguments ``forward`` takes from a dict batch (None: it names none of its keys)."""
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(batch)
    named = {key: value for key, value in batch.items() if key in params and params[key].kind is not inspect.Parameter.VAR_POSITIONAL}
    return named or None


def _one_sample(example: Any, size: int) -> Any:
    """The first sample of every tensor whose first dimension is the batch's, copied off the batch."""
    if isinstance(example, torch.Tensor):
        if size > 0 and example.dim() > 0 and example.shape[0] == size:
            return example[:1].detach().clone()
        return example.detach().clone()
    if isinstance(example, tuple):
        return tuple(_one_sample(e, size) for e in example)
    if isinstance(example, list):
        return [_one_sample(e, size) for e in example]
    if isinstance(example, Mapping):
        return {k: _one_sample(v, size) for k, v in example.items()}
    return example
