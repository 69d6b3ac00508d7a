"""The stored variables of a Keras model: role, bits, zeros, output units and uses per forward pass.

Packed int4 (and 4-bit GPTQ/AWQ) weights are unpacked and shifted by their zero point before
zeros are counted; quantization scales and zero points are ``quant_aux``, neither parameters
nor part of ``weight_bits`` (see :mod:`mlflow_green.integrations.keras_inspector`).
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final

import keras
import numpy as np

from mlflow_green.integrations._keras_calls import (
    CONV,
    CONV_T,
    DEPTHWISE,
    Call,
    L,
    all_layers,
    dedupe,
    own_variables,
)
from mlflow_green.integrations._keras_flops import prod

PRUNABLE_NAMES: Final = frozenset({"kernel", "embeddings", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel"})
_AUX_SUFFIXES: Final = ("_scale", "_scales", "_zero", "_amax_history", "g_idx")


@dataclass(frozen=True)
class WeightInfo:
    """One stored variable as the inspector sees it.

    Attributes:
        path: Variable path, e.g. ``sequential/dense/kernel``.
        role: ``prunable`` (kernels, embeddings), ``other`` (biases, norms) or ``quant_aux``
            (quantization scales and zero points).
        dtype: Stored dtype.
        bits: Bits per value (4 for packed int4).
        count: Number of values (unpacked for int4).
        stored_bytes: Bytes as stored.
        nonzero: Values that are not exactly zero.
        uses: Times one forward pass uses it (at least 1).
        trainable: Whether the optimizer updates it.
        units: Output units (columns, filters, channels) it holds, 0 if not a known kernel.
        zero_units: Units whose weights are all zero.
    """

    path: str
    role: str
    dtype: str
    bits: float
    count: int
    stored_bytes: int
    nonzero: int
    uses: int
    trainable: bool
    units: int = 0
    zero_units: int = 0


def stored_weights(model: Any, calls: list[Call], notes: list[str]) -> list[WeightInfo]:
    uses: dict[int, int] = defaultdict(int)
    for call in calls:
        for var in dedupe(call.layer.weights if call.opaque else own_variables(call.layer)):
            uses[id(var)] += call.mult
    owners = {id(v): layer for layer in reversed(all_layers(model)) for v in own_variables(layer)}
    trainable = {id(v) for v in model.trainable_weights}
    infos = []
    for chunk in _chunks(dedupe(model.weights)):
        # dropped after its chunk: a large model is never copied whole
        read = read_together([var for var, _, _ in chunk])
        for var, dtype, nbytes in chunk:
            try:
                owner, used = owners.get(id(var)), max(1, uses[id(var)])
                infos.append(_weight_info(var, dtype, nbytes, owner, used, id(var) in trainable, read.get(id(var))))
            except Exception as exc:
                notes.append(f"variable {getattr(var, 'path', var)} skipped: {type(exc).__name__}")
    return infos


READ_CHUNK_BYTES: Final = 64 * 2**20
"""At most this many bytes of variables are read in one operation (and held in host memory at once)."""


def _chunks(variables: list[Any]) -> list[list[tuple[Any, str | None, int | None]]]:
    """``variables`` with their standardized dtypes and stored bytes (None: unknown), in order, in runs
    of at most :data:`READ_CHUNK_BYTES` (a larger variable alone)."""
    chunks: list[list[tuple[Any, str | None, int | None]]] = [[]]
    size = 0
    for var in variables:
        try:
            dtype: str | None = keras.backend.standardize_dtype(var.dtype)
            nbytes: int | None = _stored_bytes(var, dtype)
        except Exception:
            dtype, nbytes = None, None  # unknown: read on its own
        counted = READ_CHUNK_BYTES if nbytes is None else nbytes
        if chunks[-1] and size + counted > READ_CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append((var, dtype, nbytes))
        size += counted
    return [chunk for chunk in chunks if chunk]


def read_together(variables: list[Any]) -> dict[int, np.ndarray]:
    """The values of ``variables`` read at once where the backend allows it, by ``id``.

    On TensorFlow (eager) one ``identity_n`` reads them all: a read per variable costs a quarter of
    a millisecond of Python and op dispatch, a model's worth of them most of an inspection. On JAX a
    variable's array is viewed in host memory as it is (``np.asarray``: no copy on the CPU; Keras's
    ``convert_to_numpy`` copies, seven times the cost); on torch a tensor's CPU storage likewise
    (bfloat16, which NumPy has not, is left to Keras). Where a read fails (a distributed variable),
    that variable is left out: it is read on its own, and a failing one noted there. The caller
    bounds the bytes read at once (:data:`READ_CHUNK_BYTES`).
    """
    if not variables:
        return {}
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            if not tf.executing_eagerly():
                return {}
            tensors = tf.identity_n([var.value for var in variables])
            return {id(var): np.asarray(tensor.numpy()) for var, tensor in zip(variables, tensors, strict=True)}
    except Exception:  # each variable is read on its own (and a failing one noted there)
        return {}
    if backend not in ("jax", "torch"):
        return {}
    read = {}
    for var in variables:
        try:
            # torch refuses dtypes NumPy has not (bfloat16): those are read by Keras, on their own
            read[id(var)] = np.asarray(var.value) if backend == "jax" else var.value.detach().cpu().numpy()
        except Exception:
            continue
    return read


def _stored_bytes(var: Any, dtype: str) -> int:
    """Bytes of ``var`` as stored (``dtype``: its standardized dtype; at least a byte a value)."""
    return prod(var.shape) * max(1, _dtype_bits(dtype) // 8)


@functools.lru_cache(maxsize=64)
def _dtype_bits(dtype: str) -> int:
    match = re.search(r"\d+", dtype)
    return int(match.group()) if match else 8  # bool


def packed_bits(layer: Any) -> int | None:
    """Bits of weights Keras packs two per byte (int4, AWQ, 4-bit GPTQ), else None."""
    mode = getattr(layer, "quantization_mode", None)
    if mode in ("int4", "awq"):
        return 4
    match = re.match(r"gptq/(\d+)", str(getattr(layer.dtype_policy, "name", ""))) if mode == "gptq" else None
    return int(match.group(1)) if match and int(match.group(1)) < 8 else None


def _values(var: Any, layer: Any, packed: bool, read: np.ndarray | None = None) -> np.ndarray:
    """Values as the layer uses them: packed int4 unpacked and shifted by its zero point (``read``:
    the stored values, read already)."""
    if not packed:
        return read if read is not None else np.asarray(keras.ops.convert_to_numpy(var))
    values = np.asarray(keras.ops.convert_to_numpy(getattr(layer, var.name)))  # the unpacking property
    zero, g_idx = getattr(layer, f"{var.name}_zero", None), getattr(layer, "g_idx", None)
    if zero is None or g_idx is None:
        return values
    zero, idx = keras.ops.convert_to_numpy(zero), keras.ops.convert_to_numpy(g_idx).astype(int)
    for axis in (0, -1):
        full = np.take(zero, idx, axis=axis)
        if full.size == values.size:
            return values.astype(np.int16) - full.reshape(values.shape).astype(np.int16)
    raise ValueError("zero point does not align with the weight")


def _unit_axes(layer: Any, name: str, ndim: int) -> tuple[int, ...]:
    """Axes of ``layer``'s weight ``name`` that index output units (empty: no units)."""
    if (name == "kernel" and isinstance(layer, (L.Dense, *CONV))) or name == "pointwise_kernel":
        return (ndim - 1,)
    if name == "kernel" and isinstance(layer, L.EinsumDense):
        kernel, out = layer.equation.split(",")[1].split("->")
        return tuple(i for i, c in enumerate(kernel) if c in out)
    if name == "kernel" and isinstance(layer, CONV_T):  # (..., filters, c_in)
        return (ndim - 2,)
    if (name == "kernel" and isinstance(layer, DEPTHWISE)) or name == "depthwise_kernel":
        return (ndim - 2, ndim - 1)
    return ()


def _weight_info(
    var: Any,
    dtype: str | None,
    stored_bytes: int | None,
    layer: Any,
    uses: int,
    trainable: bool,
    read: np.ndarray | None = None,
) -> WeightInfo:
    """``dtype``, ``stored_bytes``: ``var``'s standardized dtype and bytes as stored (None: worked out
    here); ``read``: its values, read already."""
    dtype, name = dtype or keras.backend.standardize_dtype(var.dtype), var.name
    role = "prunable" if name in PRUNABLE_NAMES else "other"
    if getattr(layer, "quantization_mode", None) and role == "other" and name.endswith(_AUX_SUFFIXES):
        role = "quant_aux"
    bits = packed = packed_bits(layer) if role == "prunable" and dtype in ("int8", "uint8") else None
    values = _values(var, layer, bool(packed), read)
    units = zero_units = 0
    if role == "prunable" and (axes := _unit_axes(layer, name, values.ndim)):
        rest = [a for a in range(values.ndim) if a not in axes]
        columns = np.transpose(values, rest + list(axes)).reshape(-1, prod(values.shape[a] for a in axes))
        units, zero_units = columns.shape[1], int(np.sum(~columns.any(axis=0)))
    return WeightInfo(
        path=var.path,
        role=role,
        dtype=dtype,
        bits=float(bits or _dtype_bits(dtype)),
        count=int(values.size),
        stored_bytes=stored_bytes if stored_bytes is not None else _stored_bytes(var, dtype),
        nonzero=int(np.count_nonzero(values)),
        uses=uses,
        trainable=trainable,
        units=units,
        zero_units=zero_units,
    )
