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

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from mlflow_green.errors import MissingExtraError
from mlflow_green.training.inspection import (
    PRUNED_SPARSITY_THRESHOLD,
    ModelInspector,
    ModelProfile,
    tensor_totals,
)

try:
    import keras
    from keras.src.backend import compute_output_spec as _compute_output_spec
except ImportError as exc:  # pragma: no cover - only without the extra
    raise MissingExtraError("keras", "keras", "The Keras integration") from exc

__all__ = ["PRUNABLE_NAMES", "PRUNED_SPARSITY_THRESHOLD", "KerasInspector", "WeightInfo"]

PRUNABLE_NAMES: Final = frozenset({"kernel", "embeddings", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel"})
_AUX_SUFFIXES: Final = ("_scale", "_scales", "_zero", "_amax_history", "g_idx")

_L = keras.layers
_CONV = (_L.Conv1D, _L.Conv2D, _L.Conv3D)
_CONV_T = (_L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose)
_DEPTHWISE = (_L.DepthwiseConv1D, _L.DepthwiseConv2D)
_SEPARABLE = (_L.SeparableConv1D, _L.SeparableConv2D)
_FLOP_LAYERS = (_L.Dense, _L.EinsumDense, _L.MultiHeadAttention, _L.Embedding, *_CONV, *_CONV_T, *_DEPTHWISE, *_SEPARABLE)
# Never traced into: counted whole (an RNN calls its cell once per step; its weights count once).
_LEAVES = (*_FLOP_LAYERS, _L.RNN, _L.Bidirectional, _L.TimeDistributed)

Shape = tuple[int | None, ...]


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


@dataclass
class _Call:
    """One layer call with shapes (batch first); ``opaque``: its sublayers' calls were not seen."""

    layer: Any
    args: list[Shape | None]
    kwargs: dict[str, Shape | None]
    outputs: list[Shape]
    mult: int
    opaque: bool = True
    count_flops: bool = True


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
            return isinstance(model, _L.Layer)
        except Exception:
            return False

    def inspect(self, model: Any, **context: Any) -> ModelProfile:
        """Profile ``model``; ``context`` may hold ``example_input`` (a batch) and ``precision``."""
        notes: list[str] = []
        example_input = context.get("example_input")
        calls, shapes_read = _collect_calls(model, example_input, notes)
        weights = _weights(model, calls, notes)
        flops = _flops(model, calls, example_input, notes) if shapes_read else None
        params = [w for w in weights if w.role != "quant_aux"]
        prunable = [w for w in params if w.role == "prunable"]
        totals = tensor_totals(params, prunable, weights)
        n_params = sum(w.count * w.uses for w in params)
        modes = _quantization_modes(model, prunable, notes)
        aux = [w for w in weights if w.role == "quant_aux"]
        if aux:
            n_aux, aux_bytes = sum(w.count for w in aux), sum(w.stored_bytes for w in aux)
            notes.append(f"{n_aux} quantization scale/zero-point values ({aux_bytes} B) in size_bytes, not params")
        return ModelProfile(
            framework="keras",
            params=n_params,
            **totals,
            flops_per_sample=flops,
            pruned=totals["sparsity"] >= PRUNED_SPARSITY_THRESHOLD,
            quantization="+".join(modes) or None,
            precision=context.get("precision") or _precision(model, notes),
            shared_weights=n_params > totals["params_unique"],
            notes=tuple(notes),
        )

    def weights(self, model: Any, **context: Any) -> list[WeightInfo]:
        """Every unique stored variable of ``model``: role, bits, zeros, uses (see the example)."""
        notes: list[str] = []
        return _weights(model, _collect_calls(model, context.get("example_input"), notes)[0], notes)


# --- calls: graph walk and symbolic trace ------------------------------------------------


def _layers(model: Any) -> list[Any]:
    return list(model._flatten_layers(include_self=True, recursive=True))


def _own(layer: Any) -> list[Any]:
    return [*getattr(layer, "_trainable_variables", []), *getattr(layer, "_non_trainable_variables", [])]


def _dedupe(variables: Any) -> list[Any]:
    return list({id(v): v for v in variables}.values())


def _sublayers(layer: Any) -> list[Any]:
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _graph_of(layer: Any) -> Any:
    if isinstance(layer, keras.Sequential):
        return layer._functional
    return layer if hasattr(layer, "_nodes_by_depth") and hasattr(layer, "_operations") else None


def _shape(x: Any) -> Shape | None:
    try:
        return tuple(None if d is None else int(d) for d in x.shape)
    except (AttributeError, TypeError, ValueError):
        return None


def _call_of(layer: Any, args: Any, kwargs: Any, outputs: Any, mult: int, opaque: bool = True) -> _Call:
    outs = [s for s in map(_shape, keras.tree.flatten(outputs)) if s is not None]
    return _Call(layer, [_shape(a) for a in args], {k: _shape(v) for k, v in kwargs.items()}, outs, mult, opaque)


def _collect_calls(model: Any, example_input: Any, notes: list[str]) -> tuple[list[_Call], bool]:
    """Every layer call of one forward pass, and whether their shapes could be read."""
    calls: list[_Call] = []
    try:
        graph = _graph_of(model)
        if graph is not None:
            calls.append(_Call(model, [], {}, [], 1, opaque=False, count_flops=False))
            _visit_graph(graph, 1, calls, notes)
            return calls, True
        spec = _input_spec(model, example_input)
        if spec is None or not (model.built or example_input is not None):
            notes.append("model not built and no example_input: FLOPs unknown")
        elif isinstance(model, _LEAVES) or not _sublayers(model):  # a single layer
            return [_call_of(model, [spec], {}, model.compute_output_spec(spec), 1)], True
        elif _trace(model, [spec], {}, 1, calls, notes):
            return calls, True
    except Exception as exc:
        notes.append(f"graph not read ({type(exc).__name__}: {exc}); FLOPs unknown")
    return [_Call(model, [], {}, [], 1)], False


def _visit_graph(graph: Any, mult: int, calls: list[_Call], notes: list[str]) -> None:
    """One call per node of ``graph``; nested models recursed, composite layers traced."""
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            op, args, kwargs = node.operation, node.arguments.args, node.arguments.kwargs
            if not isinstance(op, _L.Layer) or isinstance(op, _L.InputLayer):
                continue
            if (inner := _graph_of(op)) is not None:
                calls.append(_Call(op, [], {}, [], mult, opaque=False, count_flops=False))
                _visit_graph(inner, mult, calls, notes)
            elif isinstance(op, _LEAVES) or not _sublayers(op):
                calls.append(_call_of(op, args, kwargs, node.outputs, mult))
            else:
                _trace(op, list(args), dict(kwargs), mult, calls, notes)


def _input_spec(model: Any, example_input: Any) -> Any:
    """Symbolic inputs from ``example_input``, the graph's inputs or the shape it was built with."""

    def tensor(x: Any) -> Any:
        return keras.KerasTensor(np.shape(x), dtype=keras.backend.standardize_dtype(getattr(x, "dtype", "float32")))

    if example_input is not None:
        return keras.tree.map_structure(tensor, example_input)
    if _graph_of(model) is not None:
        return model.input
    shape = (model.get_build_config() or {}).get("input_shape")
    if shape is None:
        try:
            shape = model.input_shape
        except (AttributeError, ValueError):
            return None
    return keras.tree.map_shape_structure(lambda s: keras.KerasTensor(s), shape)


def _trace(root: Any, args: list[Any], kwargs: dict[str, Any], mult: int, calls: list[_Call], notes: list[str]) -> bool:
    """Run ``root`` on symbolic inputs, sublayers' ``call`` wrapped to record shapes; True if it ran."""
    recorded: list[_Call] = []
    stack: list[Any] = []

    def wrap(layer: Any, fn: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            if stack and (stack[-1] is layer or isinstance(stack[-1], _LEAVES)):
                return fn(*a, **kw)  # quantized_call -> call, or inside a leaf: not recorded
            stack.append(layer)
            try:
                out = fn(*a, **kw)
            finally:
                stack.pop()
            recorded.append(_call_of(layer, a, kw, out, mult, opaque=isinstance(layer, _LEAVES)))
            return out

        return wrapper

    patched: list[tuple[Any, str]] = []
    out, ran = None, False
    try:
        if not root.built:  # Keras builds by tracing call(): do it first, then trace once
            _compute_output_spec(root.__call__, *args, **kwargs)
        for layer in root._flatten_layers(include_self=False, recursive=True):
            for attr in ("call", "quantized_call"):
                if attr not in vars(layer):
                    object.__setattr__(layer, attr, wrap(layer, getattr(layer, attr)))
                    patched.append((layer, attr))
        out, ran = _compute_output_spec(root.__call__, *args, **kwargs), True
    except Exception as exc:
        notes.append(f"could not trace {root.name} ({type(exc).__name__}): FLOPs inside not counted")
        recorded = []
    finally:
        for layer, attr in patched:
            object.__delattr__(layer, attr)
    calls.append(_call_of(root, args, kwargs, out, mult, opaque=not ran))
    calls.extend(recorded)
    return ran


# --- FLOPs --------------------------------------------------------------------------------


def _flops(model: Any, calls: list[_Call], example_input: Any, notes: list[str]) -> float | None:
    """FLOPs per sample; a graph without static shapes is traced on its inputs once more."""
    total, unknown, skipped = _sum_flops(calls)
    if unknown and _graph_of(model) is not None:
        spec, traced = _input_spec(model, example_input), []
        if spec is not None and _trace(model, [spec], {}, 1, traced, []):
            total, unknown, skipped = _sum_flops(traced)
    if skipped:
        notes.append("FLOPs not counted for layer types: " + ", ".join(sorted(skipped)))
    if unknown:
        notes.append("FLOPs unknown (no static shapes; pass example_input) for: " + ", ".join(unknown[:5]))
        return None
    return total


def _sum_flops(calls: list[_Call]) -> tuple[float, list[str], set[str]]:
    """(FLOPs, layers without static shapes, types of weighted layers whose FLOPs are not counted)."""
    total, unknown, skipped = 0.0, [], set()
    for call in (c for c in calls if c.count_flops):
        layer = call.layer
        if not isinstance(layer, _FLOP_LAYERS):
            weighted = layer.weights if call.opaque else _own(layer)
            if isinstance(layer, _LEAVES) or (weighted and "normalization" not in type(layer).__module__):
                skipped.add(type(layer).__name__)
            continue
        try:
            flops = _layer_flops(layer, call)
        except Exception:
            flops = None
        if flops is None:
            unknown.append(layer.name)
        else:
            total += flops * call.mult
    return total, unknown, skipped


def _prod(values: Any) -> int:
    return math.prod(int(v) for v in values)


def _layer_flops(layer: Any, call: _Call) -> float | None:
    """Per-sample forward FLOPs of one call; None when a shape is not static."""
    if isinstance(layer, _L.Embedding):
        return 0.0
    if isinstance(layer, _L.MultiHeadAttention):
        return _mha_flops(layer, call)
    x = next((s for s in [*call.args, *call.kwargs.values()] if s is not None), None)
    y = call.outputs[0] if call.outputs else None
    bias = int(bool(getattr(layer, "use_bias", False) or getattr(layer, "bias_axes", None)))
    if x is not None and y is not None and isinstance(layer, _L.EinsumDense):
        return _einsum_flops(layer, x, y, bias)  # Keras often leaves output dims None here
    if x is None or y is None or None in x[1:] or None in y[1:]:
        return None
    xs, ys = x[1:], y[1:]
    if isinstance(layer, _L.Dense):
        return float(_prod(ys[:-1]) * layer.units * (2 * xs[-1] + bias))
    last = getattr(layer, "data_format", "channels_last") == "channels_last"
    c_in, k = (xs[-1] if last else xs[0]), _prod(layer.kernel_size)
    in_pos, out_pos = _prod(xs[:-1] if last else xs[1:]), _prod(ys[:-1] if last else ys[1:])
    if isinstance(layer, _SEPARABLE):
        inner = c_in * layer.depth_multiplier
        return float(out_pos * (inner * 2 * k + 2 * inner * layer.filters + bias * layer.filters))
    if isinstance(layer, _DEPTHWISE):
        return float(out_pos * c_in * layer.depth_multiplier * (2 * k + bias))
    if isinstance(layer, _CONV_T):  # every input position scatters a k x c_in x filters product
        return float(2 * k * c_in * layer.filters * in_pos + bias * layer.filters * out_pos)
    return float(out_pos * layer.filters * (2 * k * c_in // (getattr(layer, "groups", 1) or 1) + bias))


def _einsum_flops(layer: Any, x: Shape, y: Shape, bias: int) -> float | None:
    """2 x the product of the sizes of all einsum indices (batch index as 1), + bias adds."""
    inputs, out = layer.equation.split("->")
    inp, ker = inputs.split(",")
    if "..." in inp:
        extra = "".join(chr(ord("A") + i) for i in range(len(x) - len(inp) + 3))
        inp, out = inp.replace("...", extra), out.replace("...", extra)
    kernel_shape = getattr(layer, "original_kernel_shape", None) or layer._kernel.shape
    sizes: dict[str, int] = {inp[0]: 1}
    for spec, shape in ((inp, x), (out, y), (ker, kernel_shape)):
        sizes.update({c: int(d) for c, d in zip(spec, shape) if d is not None and c not in sizes})
    if any(c not in sizes for c in inp + ker + out):
        return None
    return 2.0 * _prod(sizes.values()) + bias * _prod(sizes[c] for c in out)


def _mha_flops(layer: Any, call: _Call) -> float | None:
    named = dict(zip(("query", "value", "key"), call.args)) | call.kwargs
    shapes = [named.get("query"), named.get("value"), named.get("key") or named.get("value")]
    shapes += call.outputs[:1]
    if len(shapes) < 4 or any(s is None or None in s[1:] for s in shapes):
        return None
    (t_q, d_q), (t_v, d_v), (t_k, d_k), (_, d_out) = ((_prod(s[1:-1]), s[-1]) for s in shapes)  # type: ignore[index]
    h, kd, vd, b = layer.num_heads, layer.key_dim, layer.value_dim, int(bool(layer.use_bias))
    projections = t_q * h * kd * (2 * d_q + b) + t_k * h * kd * (2 * d_k + b) + t_v * h * vd * (2 * d_v + b)
    return float(projections + t_q * d_out * (2 * h * vd + b) + 2 * h * t_q * t_k * kd + 2 * h * t_q * t_v * vd)


# --- weights ------------------------------------------------------------------------------


def _weights(model: Any, calls: list[_Call], notes: list[str]) -> list[WeightInfo]:
    uses: dict[int, int] = defaultdict(int)
    for call in calls:
        for var in _dedupe(call.layer.weights if call.opaque else _own(call.layer)):
            uses[id(var)] += call.mult
    owners = {id(v): layer for layer in reversed(_layers(model)) for v in _own(layer)}
    trainable = {id(v) for v in model.trainable_weights}
    infos = []
    for var in _dedupe(model.weights):
        try:
            infos.append(_weight_info(var, owners.get(id(var)), max(1, uses[id(var)]), id(var) in trainable))
        except Exception as exc:
            notes.append(f"variable {getattr(var, 'path', var)} skipped: {type(exc).__name__}")
    return infos


def _dtype_bits(dtype: str) -> int:
    match = re.search(r"\d+", dtype)
    return int(match.group()) if match else 8  # bool


def _packed_bits(layer: Any) -> int | None:
    """Bits of weights Keras packs two per byte (int4, AWQ, 4-bit GPTQ), else None."""
    mode = getattr(layer, "quantization_mode", None)
    if mode in ("int4", "awq"):
        return 4
    match = re.match(r"gptq/(\d+)", str(getattr(layer.dtype_policy, "name", ""))) if mode == "gptq" else None
    return int(match.group(1)) if match and int(match.group(1)) < 8 else None


def _values(var: Any, layer: Any, packed: bool) -> np.ndarray:
    """Values as the layer uses them: packed int4 unpacked and shifted by its zero point."""
    if not packed:
        return np.asarray(keras.ops.convert_to_numpy(var))
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
    if (name == "kernel" and isinstance(layer, (_L.Dense, *_CONV))) or name == "pointwise_kernel":
        return (ndim - 1,)
    if name == "kernel" and isinstance(layer, _L.EinsumDense):
        kernel, out = layer.equation.split(",")[1].split("->")
        return tuple(i for i, c in enumerate(kernel) if c in out)
    if name == "kernel" and isinstance(layer, _CONV_T):  # (..., filters, c_in)
        return (ndim - 2,)
    if (name == "kernel" and isinstance(layer, _DEPTHWISE)) or name == "depthwise_kernel":
        return (ndim - 2, ndim - 1)
    return ()


def _weight_info(var: Any, layer: Any, uses: int, trainable: bool) -> WeightInfo:
    dtype, name = keras.backend.standardize_dtype(var.dtype), var.name
    role = "prunable" if name in PRUNABLE_NAMES else "other"
    if getattr(layer, "quantization_mode", None) and role == "other" and name.endswith(_AUX_SUFFIXES):
        role = "quant_aux"
    bits = packed = _packed_bits(layer) if role == "prunable" and dtype in ("int8", "uint8") else None
    values = _values(var, layer, bool(packed))
    units = zero_units = 0
    if role == "prunable" and (axes := _unit_axes(layer, name, values.ndim)):
        rest = [a for a in range(values.ndim) if a not in axes]
        columns = np.transpose(values, rest + list(axes)).reshape(-1, _prod(values.shape[a] for a in axes))
        units, zero_units = columns.shape[1], int(np.sum(~columns.any(axis=0)))
    return WeightInfo(
        path=var.path,
        role=role,
        dtype=dtype,
        bits=float(bits or _dtype_bits(dtype)),
        count=int(values.size),
        stored_bytes=_prod(var.shape) * max(1, _dtype_bits(dtype) // 8),
        nonzero=int(np.count_nonzero(values)),
        uses=uses,
        trainable=trainable,
        units=units,
        zero_units=zero_units,
    )


# --- quantization and precision -----------------------------------------------------------


def _quantization_modes(model: Any, prunable: list[WeightInfo], notes: list[str]) -> list[str]:
    """Quantization modes by layer dtype policy, else by integer / float8 kernel dtypes."""
    modes: dict[str, int] = defaultdict(int)
    for layer in _layers(model):
        if mode := getattr(layer, "quantization_mode", None):
            bits = _packed_bits(layer)
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
    found = {_base_policy(layer) for layer in _layers(model) if _own(layer)}
    if len(found) == 1:
        return found.pop()
    if len(found) > 1:
        notes.append("layer precisions differ: " + ", ".join(sorted(found)))
    return _base_policy(model)
