"""Model inspection: the compression metadata of a model, framework-free.

Framework-specific inspectors (Keras, torch) live in ``mlflow_green.integrations`` and are
registered through the ``register_model_inspectors`` pluggy hook, like third-party ones. The
built-in ones are registered lazily: the framework is imported only when a model of that
framework is inspected.

Example:
    >>> profile = ModelProfile(framework="toy", params=10, params_unique=10, params_trainable=10,
    ...                        params_nonzero=5, sparsity=0.5, structured_sparsity=0.0,
    ...                        weight_bits=32.0, size_bytes=40, compressed_size_bytes=30,
    ...                        flops_per_sample=20.0, pruned=True)
    >>> profile.metrics()["green/model_sparsity"]
    0.5
    >>> profile.compression_tag()
    'pruned'
"""

from __future__ import annotations

import abc
import importlib
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol

from mlflow_green.record import schema

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelProfile:
    """What a model costs to store and run, and how it was compressed.

    Attributes:
        framework: ``keras``, ``torch`` ...
        params: Parameters as used by the forward pass: a weight shared by two layers (or a
            layer called twice) counts twice — the size of the equivalent unshared model.
        params_unique: Parameters as stored: shared weights counted once.
        params_trainable: Trainable parameters (unique).
        params_nonzero: Stored parameters that are not exactly zero (after pruning masks).
        sparsity: ``1 - params_nonzero / params_unique`` over prunable weights (kernels,
            embeddings), 0 when there are none.
        structured_sparsity: Fraction of output units / filters whose weights are all zero.
        weight_bits: Mean bits per stored weight (e.g. 8 for an int8-quantized model, 32 for
            float32, 16 for bfloat16 weights).
        size_bytes: Bytes of all stored variables, dense.
        compressed_size_bytes: Estimated bytes with sparse storage (nonzero values + a
            bitmap) and quantized dtypes: what a compressed checkpoint would need.
        flops_per_sample: Forward FLOPs per sample (1 multiply-add = 2 FLOPs), None if unknown.
        pruned: Weights were pruned (masks present, or a significant share exactly zero).
        quantization: ``int8``, ``int4``, ``float8`` ... when weights are quantized.
        precision: Compute dtype policy, e.g. ``float32``, ``mixed_float16``, ``16-mixed``.
        shared_weights: Some weights are used more than once (``params > params_unique``).
        notes: What was not counted and why.
    """

    framework: str
    params: int
    params_unique: int
    params_trainable: int
    params_nonzero: int
    sparsity: float
    structured_sparsity: float
    weight_bits: float
    size_bytes: int
    compressed_size_bytes: int
    flops_per_sample: float | None = None
    pruned: bool = False
    quantization: str | None = None
    precision: str = "float32"
    shared_weights: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def metrics(self) -> dict[str, float]:
        """The ``green/model_*`` metrics."""
        metrics = {
            schema.MODEL_PARAMS: float(self.params),
            schema.MODEL_PARAMS_UNIQUE: float(self.params_unique),
            schema.MODEL_PARAMS_NONZERO: float(self.params_nonzero),
            schema.MODEL_SPARSITY: float(self.sparsity),
            schema.MODEL_STRUCTURED_SPARSITY: float(self.structured_sparsity),
            schema.MODEL_WEIGHT_BITS: float(self.weight_bits),
            schema.MODEL_SIZE_BYTES: float(self.size_bytes),
            schema.MODEL_COMPRESSED_SIZE_BYTES: float(self.compressed_size_bytes),
        }
        if self.flops_per_sample is not None:
            metrics[schema.MODEL_FLOPS_PER_SAMPLE] = float(self.flops_per_sample)
        return metrics

    def compression_tag(self) -> str:
        """The ``green.compression`` tag, e.g. ``pruned,int8,shared,mixed_float16`` (``none`` if plain)."""
        parts = []
        if self.pruned:
            parts.append("pruned")
        if self.quantization:
            parts.append(self.quantization)
        if self.shared_weights:
            parts.append("shared")
        if self.precision and self.precision not in {"float32", "32-true", "32", "fp32"}:
            parts.append(self.precision)
        return ",".join(parts) or "none"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view for ``report.json``."""
        return {**asdict(self), "notes": list(self.notes), "compression": self.compression_tag()}


PRUNED_SPARSITY_THRESHOLD = 0.10
"""A model counts as pruned when at least this share of its prunable weights is exactly zero."""


class TensorStats(Protocol):
    """What an inspector knows about one stored tensor (weights, buffers, quantization scales)."""

    count: int  # values (unpacked: an int4 tensor of 8 values stored in 4 bytes has count 8)
    nonzero: int
    bits: float  # bits per stored value
    trainable: bool
    units: int  # output units / filters, for structured sparsity (0 when not a unit-bearing weight)
    zero_units: int

    @property
    def stored_bytes(self) -> int: ...


def compressed_bytes(count: int, nonzero: int, bits: float, stored_bytes: int) -> int:
    """Bytes of a tensor stored sparse: non-zero values at ``bits`` each plus a one-bit-per-value
    bitmap, capped at its stored size; stored bytes beyond the values (scales) are kept.

    Example:
        >>> compressed_bytes(count=1000, nonzero=100, bits=32, stored_bytes=4000)
        525
    """
    if nonzero >= count:
        return stored_bytes
    extra_bytes = max(stored_bytes - math.ceil(count * bits / 8), 0)
    return min(stored_bytes, math.ceil(nonzero * bits / 8 + count / 8) + extra_bytes)


def tensor_totals(
    params: Sequence[TensorStats], prunable: Sequence[TensorStats], stored: Sequence[TensorStats]
) -> dict[str, Any]:
    """The :class:`ModelProfile` fields both inspectors compute the same way from their tensors.

    Args:
        params: Unique parameters (what ``params_unique`` counts).
        prunable: The prunable ones among them (kernels, embeddings): sparsity is over these.
        stored: Every stored tensor (parameters, buffers, quantization scales): the sizes.

    Example:
        >>> from types import SimpleNamespace as T
        >>> w = T(count=8, nonzero=4, bits=32.0, trainable=True, units=2, zero_units=1, stored_bytes=32)
        >>> tensor_totals([w], [w], [w])["sparsity"]
        0.5
    """
    n_unique = sum(t.count for t in params)
    n_prunable = sum(t.count for t in prunable)
    units = sum(t.units for t in prunable)
    return {
        "params_unique": n_unique,
        "params_trainable": sum(t.count for t in params if t.trainable),
        "params_nonzero": sum(t.nonzero for t in params),
        "sparsity": 1.0 - sum(t.nonzero for t in prunable) / n_prunable if n_prunable else 0.0,
        "structured_sparsity": sum(t.zero_units for t in prunable) / units if units else 0.0,
        "weight_bits": sum(t.bits * t.count for t in params) / n_unique if n_unique else 32.0,
        "size_bytes": sum(t.stored_bytes for t in stored),
        "compressed_size_bytes": sum(compressed_bytes(t.count, t.nonzero, t.bits, t.stored_bytes) for t in stored),
    }


def profile_from_tensors(
    framework: str,
    *,
    params: int,
    weights: Sequence[TensorStats],
    prunable: Sequence[TensorStats],
    stored: Sequence[TensorStats],
    flops_per_sample: float | None,
    quantization_modes: Sequence[str],
    precision: str,
    notes: Sequence[str],
    pruned: bool = False,
) -> ModelProfile:
    """The :class:`ModelProfile` an inspector assembles from its tensors, the same way for every framework.

    Args:
        framework: ``keras``, ``torch`` ...
        params: Parameters counted once per use in the forward pass.
        weights: Unique parameters; ``prunable``: those sparsity is over; ``stored``: every stored
            tensor (see :func:`tensor_totals`).
        flops_per_sample: Forward FLOPs per sample, None if unknown.
        quantization_modes: Sorted modes (``int8``, ``float8`` ...), joined with ``+``; empty: not quantized.
        precision: Compute precision.
        notes: What was not counted and why.
        pruned: A pruning mark the framework keeps (masks); sparsity over
            :data:`PRUNED_SPARSITY_THRESHOLD` counts as pruned too.

    Example:
        >>> from types import SimpleNamespace as T
        >>> w = T(count=8, nonzero=4, bits=32.0, trainable=True, units=2, zero_units=1, stored_bytes=32)
        >>> profile = profile_from_tensors("toy", params=16, weights=[w], prunable=[w], stored=[w],
        ...                                flops_per_sample=None, quantization_modes=(), precision="float32",
        ...                                notes=())
        >>> profile.pruned, profile.shared_weights, profile.compression_tag()
        (True, True, 'pruned,shared')
    """
    totals = tensor_totals(weights, prunable, stored)
    return ModelProfile(
        framework=framework,
        params=params,
        **totals,
        flops_per_sample=flops_per_sample,
        pruned=pruned or totals["sparsity"] >= PRUNED_SPARSITY_THRESHOLD,
        quantization="+".join(quantization_modes) or None,
        precision=precision,
        shared_weights=params > totals["params_unique"],
        notes=tuple(notes),
    )


class ModelInspector(abc.ABC):
    """Reads a :class:`ModelProfile` from models of one framework.

    Example:
        >>> class CountOnly(ModelInspector):
        ...     name = "count-only"
        ...     def supports(self, model): return isinstance(model, list)
        ...     def inspect(self, model, **context): ...
        >>> CountOnly().supports([1, 2])
        True
    """

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def supports(self, model: Any) -> bool:
        """True if this inspector understands ``model``. Must be cheap and never raise."""

    @abc.abstractmethod
    def inspect(self, model: Any, **context: Any) -> ModelProfile:
        """The profile of ``model``. ``context`` may hold ``example_input`` or ``precision``."""


class LazyInspector(ModelInspector):
    """An inspector imported only when a model of its framework shows up.

    Args:
        name: Inspector name.
        module: Module holding the real inspector (imports the framework).
        attribute: Class name of the real inspector in ``module``.
        model_module_prefixes: A model is a candidate when a class in its MRO comes from a
            module starting with one of these (checked without importing anything).
    """

    def __init__(self, name: str, module: str, attribute: str, model_module_prefixes: tuple[str, ...]) -> None:
        self.name = name  # type: ignore[misc]
        self._module = module
        self._attribute = attribute
        self._prefixes = model_module_prefixes
        self._real: ModelInspector | None = None

    def _load(self) -> ModelInspector:
        if self._real is None:
            self._real = getattr(importlib.import_module(self._module), self._attribute)()
        return self._real

    def supports(self, model: Any) -> bool:
        try:
            modules = {getattr(cls, "__module__", "") or "" for cls in type(model).__mro__}
            if not any(m.startswith(self._prefixes) for m in modules):
                return False
            return self._load().supports(model)
        except Exception:
            return False

    def inspect(self, model: Any, **context: Any) -> ModelProfile:
        return self._load().inspect(model, **context)
