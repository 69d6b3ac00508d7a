"""Forward FLOPs per sample of a Keras model, from its layer calls (multiply-add = 2, bias add = 1).

Counted: Dense, EinsumDense, Conv1D/2D/3D, Conv*Transpose, DepthwiseConv1D/2D, SeparableConv1D/2D,
MultiHeadAttention (projections, ``QK^T``, attention x V), the recurrent layers SimpleRNN, LSTM and GRU
(their cells' kernel and recurrent products and bias adds at every time step: 1, 4 and 3 gates; the gates'
element-wise products are not multiply-adds), and Bidirectional / TimeDistributed around counted layers,
per call; the rest is named in the notes and in a warning (see
:mod:`mlflow_green.integrations.keras_inspector`).
"""

from __future__ import annotations

import logging
import math
import weakref
from typing import Any

from mlflow_green.integrations._keras_calls import (
    CONV_T,
    DEPTHWISE,
    FLOP_LAYERS,
    LEAVES,
    SEPARABLE,
    Call,
    L,
    Shape,
    graph_of,
    input_spec,
    own_variables,
    trace,
)

logger = logging.getLogger(__name__)
COUNTED = (*FLOP_LAYERS, L.RNN, L.Bidirectional, L.TimeDistributed)
"""Layers whose FLOPs are counted (a recurrent layer or a wrapper around an uncounted layer: skipped)."""
GATES = {"SimpleRNNCell": 1, "LSTMCell": 4, "GRUCell": 3}
"""Per cell type, the matrix products of one time step (each ``units`` wide)."""


_WARNED: weakref.WeakKeyDictionary[Any, set[frozenset[str]]] = weakref.WeakKeyDictionary()
"""Per model, the sets of layer types whose FLOPs were said not to be counted."""


def _first_warning(model: Any, layer_types: frozenset[str]) -> bool:
    """True the first time ``model`` is found with ``layer_types`` not counted (always True for a model that
    cannot be weakly referenced)."""
    try:
        warned = _WARNED.setdefault(model, set())
    except TypeError:
        return True
    first = layer_types not in warned
    warned.add(layer_types)
    return first


class NotCounted(Exception):
    """A layer of a counted type around one whose FLOPs are not counted (an RNN with a custom cell)."""


def forward_flops(model: Any, calls: list[Call], example_input: Any, notes: list[str]) -> float | None:
    """FLOPs per sample; a graph without static shapes is traced on its inputs once more."""
    total, unknown, skipped = _sum_flops(calls)
    if unknown and graph_of(model) is not None:
        spec, traced = input_spec(model, example_input), []
        if spec is not None and trace(model, [spec], {}, 1, traced, []):
            total, unknown, skipped = _sum_flops(traced)
    if skipped:
        notes.append("FLOPs not counted for layer types: " + ", ".join(sorted(skipped)))
        if _first_warning(model, frozenset(skipped)):  # once a model (a fit profiles it as it starts and as it ends)
            logger.warning("mlflow-green: FLOPs are not counted for the layer types %s: green/model_flops_per_sample and "
                           "green/flop_per_j leave them out", ", ".join(sorted(skipped)))
    if unknown:
        notes.append("FLOPs unknown (no static shapes; pass example_input) for: " + ", ".join(unknown[:5]))
        return None
    return total


def _sum_flops(calls: list[Call]) -> tuple[float, list[str], set[str]]:
    """(FLOPs, layers without static shapes, types of weighted layers whose FLOPs are not counted)."""
    total, unknown, skipped = 0.0, [], set()
    for call in (c for c in calls if c.count_flops):
        layer = call.layer
        if not isinstance(layer, COUNTED):
            weighted = layer.weights if call.opaque else own_variables(layer)
            if isinstance(layer, LEAVES) or (weighted and "normalization" not in type(layer).__module__):
                skipped.add(type(layer).__name__)
            continue
        try:
            flops = _layer_flops(layer, call)
        except NotCounted as exc:
            skipped.add(str(exc))
            continue
        except Exception:
            flops = None
        if flops is None:
            unknown.append(layer.name)
        else:
            total += flops * call.mult
    return total, unknown, skipped


def prod(values: Any) -> int:
    return math.prod(int(v) for v in values)


def _layer_flops(layer: Any, call: Call) -> float | None:
    """Per-sample forward FLOPs of one call; None when a shape is not static."""
    if isinstance(layer, L.Embedding):
        return 0.0
    if isinstance(layer, L.MultiHeadAttention):
        return _mha_flops(layer, call)
    x = next((s for s in [*call.args, *call.kwargs.values()] if s is not None), None)
    y = call.outputs[0] if call.outputs else None
    if isinstance(layer, (L.RNN, L.Bidirectional, L.TimeDistributed)):
        return _sequence_flops(layer, x, y)
    bias = int(bool(getattr(layer, "use_bias", False) or getattr(layer, "bias_axes", None)))
    if x is not None and y is not None and isinstance(layer, L.EinsumDense):
        return _einsum_flops(layer, x, y, bias)  # Keras often leaves output dims None here
    if x is None or y is None or None in x[1:] or None in y[1:]:
        return None
    xs, ys = x[1:], y[1:]
    if isinstance(layer, L.Dense):
        return float(prod(ys[:-1]) * layer.units * (2 * xs[-1] + bias))
    last = getattr(layer, "data_format", "channels_last") == "channels_last"
    c_in, k = (xs[-1] if last else xs[0]), prod(layer.kernel_size)
    in_pos, out_pos = prod(xs[:-1] if last else xs[1:]), prod(ys[:-1] if last else ys[1:])
    if isinstance(layer, SEPARABLE):
        inner = c_in * layer.depth_multiplier
        return float(out_pos * (inner * 2 * k + 2 * inner * layer.filters + bias * layer.filters))
    if isinstance(layer, DEPTHWISE):
        return float(out_pos * c_in * layer.depth_multiplier * (2 * k + bias))
    if isinstance(layer, CONV_T):  # every input position scatters a k x c_in x filters product
        return float(2 * k * c_in * layer.filters * in_pos + bias * layer.filters * out_pos)
    return float(out_pos * layer.filters * (2 * k * c_in // (getattr(layer, "groups", 1) or 1) + bias))


def _sequence_flops(layer: Any, x: Shape | None, y: Shape | None) -> float | None:
    """A recurrent layer's FLOPs (every time step), a Bidirectional's (both directions) or a TimeDistributed's
    (its layer at every time step); None when the time steps or the input's width are not static."""
    if x is None or len(x) < 3 or None in x[1:]:
        return None
    if isinstance(layer, L.Bidirectional):
        return sum(_sequence_flops(inner, x, None) for inner in (layer.forward_layer, layer.backward_layer))  # type: ignore[misc]
    if isinstance(layer, L.TimeDistributed):
        inner = layer.layer
        if not isinstance(inner, COUNTED):
            if inner.weights and "normalization" not in type(inner).__module__:
                raise NotCounted(f"TimeDistributed({type(inner).__name__})")
            return 0.0  # as the same layer's own call: no FLOPs counted, nothing to say
        inner_y = (y[0], *y[2:]) if y is not None and len(y) > 2 else None
        step = _layer_flops(inner, Call(inner, [(x[0], *x[2:])], {}, [inner_y] if inner_y else [], 1))
        return None if step is None else float(x[1]) * step
    cell = layer.cell
    gates = GATES.get(type(cell).__name__)
    if gates is None:
        raise NotCounted(f"{type(layer).__name__}({type(cell).__name__})")
    units, width = int(cell.units), int(x[-1])
    biases = (2 if getattr(cell, "reset_after", False) else 1) * int(bool(cell.use_bias))
    return float(x[1]) * gates * units * (2 * (width + units) + biases)


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
    return 2.0 * prod(sizes.values()) + bias * prod(sizes[c] for c in out)


def _mha_flops(layer: Any, call: Call) -> float | None:
    named = dict(zip(("query", "value", "key"), call.args)) | call.kwargs
    shapes = [named.get("query"), named.get("value"), named.get("key") or named.get("value")]
    shapes += call.outputs[:1]
    if len(shapes) < 4 or any(s is None or None in s[1:] for s in shapes):
        return None
    (t_q, d_q), (t_v, d_v), (t_k, d_k), (_, d_out) = ((prod(s[1:-1]), s[-1]) for s in shapes)  # type: ignore[index]
    h, kd, vd, b = layer.num_heads, layer.key_dim, layer.value_dim, int(bool(layer.use_bias))
    projections = t_q * h * kd * (2 * d_q + b) + t_k * h * kd * (2 * d_k + b) + t_v * h * vd * (2 * d_v + b)
    return float(projections + t_q * d_out * (2 * h * vd + b) + 2 * h * t_q * t_k * kd + 2 * h * t_q * t_v * vd)
