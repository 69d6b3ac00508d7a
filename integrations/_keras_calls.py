"""Every layer call of one Keras forward pass, with its shapes: the graph walk and the symbolic trace.

Functional and Sequential models are read from their graph nodes (nested models recursed);
custom composite layers, subclassed models and graphs without static shapes are run on symbolic
inputs with each sublayer's ``call`` wrapped to record it. What counts as a leaf (a layer never
traced into: its FLOPs are counted whole) is here too. Used by
:mod:`mlflow_green.integrations.keras_inspector` (the rules are in its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras.src.backend import compute_output_spec as _compute_output_spec

L = keras.layers
CONV = (L.Conv1D, L.Conv2D, L.Conv3D)
CONV_T = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
FLOP_LAYERS = (L.Dense, L.EinsumDense, L.MultiHeadAttention, L.Embedding, *CONV, *CONV_T, *DEPTHWISE, *SEPARABLE)
"""Layers whose FLOPs are counted (:mod:`~mlflow_green.integrations._keras_flops`)."""
LEAVES = (*FLOP_LAYERS, L.RNN, L.Bidirectional, L.TimeDistributed)
"""Never traced into: counted whole (an RNN calls its cell once per step; its weights count once)."""

Shape = tuple[int | None, ...]


@dataclass
class Call:
    """One layer call with shapes (batch first); ``opaque``: its sublayers' calls were not seen."""

    layer: Any
    args: list[Shape | None]
    kwargs: dict[str, Shape | None]
    outputs: list[Shape]
    mult: int
    opaque: bool = True
    count_flops: bool = True


def all_layers(model: Any) -> list[Any]:
    return list(model._flatten_layers(include_self=True, recursive=True))


def own_variables(layer: Any) -> list[Any]:
    return [*getattr(layer, "_trainable_variables", []), *getattr(layer, "_non_trainable_variables", [])]


def dedupe(variables: Any) -> list[Any]:
    return list({id(v): v for v in variables}.values())


def _sublayers(layer: Any) -> list[Any]:
    return list(layer._flatten_layers(include_self=False, recursive=False))


def graph_of(layer: Any) -> Any:
    if isinstance(layer, keras.Sequential):
        return layer._functional
    return layer if hasattr(layer, "_nodes_by_depth") and hasattr(layer, "_operations") else None


def _shape(x: Any) -> Shape | None:
    try:
        return tuple(None if d is None else int(d) for d in x.shape)
    except (AttributeError, TypeError, ValueError):
        return None


def _call_of(layer: Any, args: Any, kwargs: Any, outputs: Any, mult: int, opaque: bool = True) -> Call:
    outs = [s for s in map(_shape, keras.tree.flatten(outputs)) if s is not None]
    return Call(layer, [_shape(a) for a in args], {k: _shape(v) for k, v in kwargs.items()}, outs, mult, opaque)


def collect_calls(model: Any, example_input: Any, notes: list[str]) -> tuple[list[Call], bool]:
    """Every layer call of one forward pass, and whether their shapes could be read."""
    calls: list[Call] = []
    try:
        graph = graph_of(model)
        if graph is not None:
            calls.append(Call(model, [], {}, [], 1, opaque=False, count_flops=False))
            _visit_graph(graph, 1, calls, notes)
            return calls, True
        spec = input_spec(model, example_input)
        if spec is None or not (model.built or example_input is not None):
            notes.append("model not built and no example_input: FLOPs unknown")
        elif isinstance(model, LEAVES) or not _sublayers(model):  # a single layer
            return [_call_of(model, [spec], {}, model.compute_output_spec(spec), 1)], True
        elif trace(model, [spec], {}, 1, calls, notes):
            return calls, True
    except Exception as exc:
        notes.append(f"graph not read ({type(exc).__name__}: {exc}); FLOPs unknown")
    return [Call(model, [], {}, [], 1)], False


def _visit_graph(graph: Any, mult: int, calls: list[Call], notes: list[str]) -> None:
    """One call per node of ``graph``; nested models recursed, composite layers traced."""
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            op, args, kwargs = node.operation, node.arguments.args, node.arguments.kwargs
            if not isinstance(op, L.Layer) or isinstance(op, L.InputLayer):
                continue
            if (inner := graph_of(op)) is not None:
                calls.append(Call(op, [], {}, [], mult, opaque=False, count_flops=False))
                _visit_graph(inner, mult, calls, notes)
            elif isinstance(op, LEAVES) or not _sublayers(op):
                calls.append(_call_of(op, args, kwargs, node.outputs, mult))
            else:
                trace(op, list(args), dict(kwargs), mult, calls, notes)


def input_spec(model: Any, example_input: Any) -> Any:
    """Symbolic inputs from ``example_input``, the graph's inputs or the shape it was built with."""

    def tensor(x: Any) -> Any:
        return keras.KerasTensor(np.shape(x), dtype=keras.backend.standardize_dtype(getattr(x, "dtype", "float32")))

    if example_input is not None:
        return keras.tree.map_structure(tensor, example_input)
    if (graph := graph_of(model)) is not None:
        return graph.input  # a Sequential's own .input raises until it is called; its graph's does not
    shape = (model.get_build_config() or {}).get("input_shape")
    if shape is None:
        try:
            shape = model.input_shape
        except (AttributeError, ValueError):
            return None
    return keras.tree.map_shape_structure(lambda s: keras.KerasTensor(s), shape)


def trace(root: Any, args: list[Any], kwargs: dict[str, Any], mult: int, calls: list[Call], notes: list[str]) -> bool:
    """Run ``root`` on symbolic inputs, sublayers' ``call`` wrapped to record shapes; True if it ran."""
    recorded: list[Call] = []
    stack: list[Any] = []

    def wrap(layer: Any, fn: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            if stack and (stack[-1] is layer or isinstance(stack[-1], LEAVES)):
                return fn(*a, **kw)  # quantized_call -> call, or inside a leaf: not recorded
            stack.append(layer)
            try:
                out = fn(*a, **kw)
            finally:
                stack.pop()
            recorded.append(_call_of(layer, a, kw, out, mult, opaque=isinstance(layer, LEAVES)))
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
