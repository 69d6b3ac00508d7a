"""Compression metadata of Keras 3 models: parameters, sparsity, quantization, size, FLOPs.

* **Weights** are ``model.weights``: trainable and non-trainable variables (BatchNorm moving
  statistics included), de-duplicated by identity; optimizer, metric and seed-generator state
  is not. Quantization metadata (``*_scale``, ``*_zero``, ``*_amax_history``, ``g_idx`` of
  quantized layers) is stored, so it is in ``size_bytes`` and ``compressed_size_bytes``, but it
  is neither a parameter nor part of ``weight_bits``.
* ``params`` counts each weight once per use: per call of each layer holding it, read from the
  model graph (a Dense applied to two inputs, a layer repeated in a Sequential, a variable held
  by two layers: tied weights). A weight seen in no call counts once.
* ``sparsity = 1 - nonzero / total`` over prunable weights (variables named ``kernel``,
  ``embeddings``, ``depthwise_kernel``, ``pointwise_kernel``, ``recurrent_kernel``; not biases
  or normalization). Keras 3 has no pruning API, so pruning shows as exact zeros; ``pruned`` is
  ``sparsity >= PRUNED_SPARSITY_THRESHOLD``. ``params_nonzero`` counts non-zeros of all weights.
  ``structured_sparsity``: share of all-zero output units (Dense/EinsumDense output columns,
  Conv filters, depthwise channels, pointwise filters; embedding rows are not units).
* **Quantization** is read from layer dtype policies (``int8_from_float32``, ``int4/128_...``,
  ``float8_...``) and variable dtypes. Keras packs two int4 values per int8 byte: those weights
  count 4 bits each and as their unpacked number of values; zero-point int4 weights are zero
  where the quantized value equals the zero point. ``float8`` keeps float32 weights (quantized
  on the fly) and reports 32 bits. ``weight_bits`` is the mean over weights weighted by value
  count: an int8 Dense stack with large kernels reports ~8 (its float32 biases add a little).
* ``size_bytes`` = sum over unique variables of stored ``size * itemsize`` (int4 as packed).
  ``compressed_size_bytes`` = sum over unique variables of ``ceil(size * bits / 8)`` without
  zeros, else ``min(ceil(size * bits / 8), ceil(nonzero * bits / 8 + size / 8))``: non-zero
  values at their stored width plus a one-bit-per-value bitmap, capped at dense storage.
* ``flops_per_sample``: forward FLOPs per sample, multiply-add = 2, bias add = 1 per output
  value, summed over every call of: Dense, EinsumDense, Conv1D/2D/3D, Conv*Transpose,
  DepthwiseConv1D/2D, SeparableConv1D/2D, MultiHeadAttention (Q, K, V, output projections,
  ``QK^T``, attention x V; softmax not counted). Embedding lookups are 0. Pooling, activations,
  normalization, element-wise layers, RNNs and raw ``keras.ops`` are not counted (usually < 5 %
  of a CNN; RNNs are named in ``notes``). Shapes come from the graph nodes of functional and
  Sequential models (nested models recursed); custom composite layers, subclassed models and
  graphs without static shapes are traced symbolically on ``example_input`` (or the inputs /
  build shape) with each sublayer's ``call`` wrapped for the trace.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from mlflow_green.errors import MissingExtraError
from mlflow_green.training.inspection import (
    PRUNED_SPARSITY_THRESHOLD,
    ModelInspector,
    ModelProfile,
    profile_from_tensors,
)

try:
    import keras  # noqa: F401  (the extra's check: the modules below import it too)
except ImportError as exc:  # pragma: no cover - only without the extra
    raise MissingExtraError("keras", "keras", "The Keras integration") from exc

from mlflow_green.integrations._keras_calls import L, all_layers, collect_calls, own_variables
from mlflow_green.integrations._keras_flops import forward_flops
from mlflow_green.integrations._keras_weights import PRUNABLE_NAMES, WeightInfo, packed_bits, stored_weights

__all__ = ["PRUNABLE_NAMES", "PRUNED_SPARSITY_THRESHOLD", "KerasInspector", "WeightInfo"]


class KerasInspector(ModelInspector):
    """Reads a :class:`~mlflow_green.training.inspection.ModelProfile` from Keras 3 models and layers.

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
        >>> profile = KerasInspector().inspect(model)
        >>> profile.params, profile.flops_per_sample  # 64*10 + 10; 10 * (2*64 + 1)
        (650, 1290.0)
        >>> [(w.role, w.bits, w.count) for w in KerasInspector().weights(model)]
        [('prunable', 32.0, 640), ('other', 32.0, 10)]
    """

    name = "keras"

    def supports(self, model: Any) -> bool:
        """True for ``keras.Model`` and ``keras.layers.Layer`` instances."""
        try:
            return isinstance(model, L.Layer)
        except Exception:
            return False

    def inspect(self, model: Any, **context: Any) -> ModelProfile:
        """Profile ``model``; ``context`` may hold ``example_input`` (a batch) and ``precision``."""
        notes: list[str] = []
        example_input = context.get("example_input")
        calls, shapes_read = collect_calls(model, example_input, notes)
        weights = stored_weights(model, calls, notes)
        flops = forward_flops(model, calls, example_input, notes) if shapes_read else None
        params = [w for w in weights if w.role != "quant_aux"]
        prunable = [w for w in params if w.role == "prunable"]
        modes = _quantization_modes(model, prunable, notes)
        aux = [w for w in weights if w.role == "quant_aux"]
        if aux:
            n_aux, aux_bytes = sum(w.count for w in aux), sum(w.stored_bytes for w in aux)
            notes.append(f"{n_aux} quantization scale/zero-point values ({aux_bytes} B) in size_bytes, not params")
        precision = context.get("precision") or _precision(model, notes)
        return profile_from_tensors(
            "keras", params=sum(w.count * w.uses for w in params), weights=params, prunable=prunable,
            stored=weights, flops_per_sample=flops, quantization_modes=modes, precision=precision, notes=notes,
        )

    def weights(self, model: Any, **context: Any) -> list[WeightInfo]:
        """Every unique stored variable of ``model``: role, bits, zeros, uses (see the example)."""
        notes: list[str] = []
        return stored_weights(model, collect_calls(model, context.get("example_input"), notes)[0], notes)


# --- quantization and precision -----------------------------------------------------------


def _quantization_modes(model: Any, prunable: list[WeightInfo], notes: list[str]) -> list[str]:
    """Quantization modes by layer dtype policy, else by integer / float8 kernel dtypes."""
    modes: dict[str, int] = defaultdict(int)
    for layer in all_layers(model):
        if mode := getattr(layer, "quantization_mode", None):
            bits = packed_bits(layer)
            modes[mode if mode in ("int8", "int4", "float8") or not bits else f"{mode}-int{bits}"] += 1
    for w in [] if modes else prunable:
        if w.dtype.startswith(("int", "uint", "float8")):
            modes["float8" if w.dtype.startswith("float8") else f"int{int(w.bits)}"] += 1
    if modes and prunable:
        bits = sum(w.bits * w.count for w in prunable) / sum(w.count for w in prunable)
        detail = ", ".join(f"{m} x{n}" for m, n in sorted(modes.items()))
        notes.append(f"quantized layers ({detail}): kernels stored at {bits:g} bits on average")
    if "float8" in modes:
        notes.append("float8 keeps float32 weights (quantized on the fly): 32 bits stored")
    return sorted(modes)


def _base_policy(layer: Any) -> str:
    name = str(getattr(getattr(layer, "dtype_policy", None), "name", "float32"))
    return name.split("_from_", 1)[1] if "_from_" in name else name


def _precision(model: Any, notes: list[str]) -> str:
    """The dtype policy of the model's weighted layers, else the model's own."""
    found = {_base_policy(layer) for layer in all_layers(model) if own_variables(layer)}
    if len(found) == 1:
        return found.pop()
    if len(found) > 1:
        notes.append("layer precisions differ: " + ", ".join(sorted(found)))
    return _base_policy(model)
