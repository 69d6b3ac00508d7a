"""Forward FLOPs per sample of a torch model, and how often each module is called, from one pass.

One ``torch.no_grad()`` forward pass on the example input under ``FlopCounterMode``, plus by hand
the bias adds and quantized Linear/Conv modules it does not see; the model's train/eval flags,
pruned weight attributes and the fused-attention switch are restored, and the random generators
and buffers the pass may change (:mod:`~mlflow_green.integrations._torch_state`). Memoised per model
structure and example shapes when the caller keeps a cache. The rules are in
:mod:`mlflow_green.integrations.torch_inspector`.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Final

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from mlflow_green.integrations._torch_state import state_kept
from mlflow_green.integrations._torch_tensors import Q_CONV, Q_CONV_T, Q_LINEAR, pruned_names


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    return next((t for t in map(_first_tensor, items) if t is not None), None)


def _map_tensors(value: Any, fn: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_map_tensors(v, fn) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def _call_arguments(model: nn.Module, example_input: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(args, kwargs) on the model's device and floating dtype; tuple/list/dict as in Lightning."""
    first = next(iter(model.parameters()), None)
    first = next(iter(model.buffers()), None) if first is None else first
    floats = {p.dtype for p in model.parameters() if p.is_floating_point()}
    dtype = floats.pop() if len(floats) == 1 else None

    def move(t: torch.Tensor) -> torch.Tensor:
        t = t.to(first.device) if first is not None else t
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    batch = _map_tensors(example_input, move)
    if isinstance(batch, dict):
        return (), batch
    return (tuple(batch), {}) if isinstance(batch, (list, tuple)) else ((batch,), {})


def _cpu_attention_flops(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    """``FlopCounterMode`` has no formula for the CPU attention kernel: the one of the GPU kernels."""
    return sdpa_flop_count(query, key, value)


_CPU_SDPA = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_FLOP_FORMULAS: Final = {_CPU_SDPA: _cpu_attention_flops} if _CPU_SDPA is not None else {}
_MHA = getattr(torch.backends, "mha", None)  # torch >= 2.3: switch of the fused attention fast path


def _extra_flops(module: nn.Module, args: tuple[Any, ...], output: Any) -> float:
    """FLOPs ``FlopCounterMode`` misses: bias adds and quantized Linear/Conv modules."""
    out = _first_tensor(output)
    if out is None:
        return 0.0
    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
        return float(out.numel()) if module.bias is not None else 0.0
    if not isinstance(module, (*Q_LINEAR, *Q_CONV, *Q_CONV_T)):
        return 0.0
    bias = float(out.numel()) if module.bias() is not None else 0.0
    if isinstance(module, Q_LINEAR):
        return 2.0 * out.numel() * module.in_features + bias
    k = math.prod(module.kernel_size)
    if isinstance(module, Q_CONV_T):
        x = _first_tensor(args)  # every input value meets out_channels / groups kernels
        return 2.0 * (x.numel() if x is not None else 0) * (module.out_channels // module.groups) * k + bias
    return 2.0 * out.numel() * (module.in_channels // module.groups) * k + bias


_GATES: Final = {"LSTM": 4, "GRU": 3}  # nn.RNN: 1


def recurrent_flops(module: nn.RNNBase, args: tuple[Any, ...]) -> float:
    """An ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` call's FLOPs (the whole batch): at every time step of every layer and
    direction, the gates' input and recurrent products and both bias adds (and an LSTM's projection). Its
    fused kernel hides them from ``FlopCounterMode`` (an LSTM counted none)."""
    x = args[0] if args else None
    data = getattr(x, "data", x) if isinstance(x, nn.utils.rnn.PackedSequence) else x
    if not isinstance(data, torch.Tensor):
        return 0.0
    steps = data.shape[0] if isinstance(x, nn.utils.rnn.PackedSequence) or data.dim() < 3 else data.shape[0] * data.shape[1]
    gates, hidden, proj = _GATES.get(module.mode, 1), module.hidden_size, getattr(module, "proj_size", 0) or 0
    state, directions = proj or hidden, 2 if module.bidirectional else 1
    flops, width = 0.0, module.input_size
    for _ in range(module.num_layers):
        per_step = gates * hidden * (2 * (width + state) + (2 if module.bias else 0)) + (2 * hidden * proj)
        flops += directions * per_step * steps
        width = directions * state
    return float(flops)


def counted_flops(
    model: nn.Module, example_input: Any, notes: list[str], cache: dict[str, Any] | None
) -> tuple[dict[int, int] | None, float | None]:
    """:func:`_count_flops`, memoised in ``cache`` while the model's structure and the example's shapes hold."""
    if cache is None or example_input is None:
        return _count_flops(model, example_input, notes)
    key = (_structure(model), _shapes(example_input))
    if cache.get("key") == key:
        notes.extend(cache["notes"])
        return cache["calls"], cache["flops"]
    counted: list[str] = []
    calls, flops = _count_flops(model, example_input, counted)
    notes.extend(counted)
    cache.update(key=key, calls=calls, flops=flops, notes=counted)
    return calls, flops


def _structure(model: nn.Module) -> tuple[Any, ...]:
    """What the FLOPs and call counts depend on: modules, their tensors' shapes and dtypes, prune masks."""
    return tuple(
        (id(m), type(m), tuple((n, tuple(t.shape), t.dtype) for n, t in (*m._parameters.items(), *m._buffers.items()) if t is not None),
         bool(pruned_names(m)))
        for m in model.modules()
    )


def _shapes(example: Any) -> Any:
    if isinstance(example, torch.Tensor):
        return (tuple(example.shape), example.dtype)
    if isinstance(example, (tuple, list)):
        return tuple(_shapes(e) for e in example)
    if isinstance(example, dict):
        return tuple((k, _shapes(v)) for k, v in example.items())
    return type(example)


def _count_flops(model: nn.Module, example_input: Any, notes: list[str]) -> tuple[dict[int, int] | None, float | None]:
    """(calls per module id, forward FLOPs per sample) from one pass on ``example_input``."""
    if example_input is None:
        notes.append("no example_input: FLOPs unknown; params count modules per registration, not per call")
        return None, None
    calls: Counter[int] = Counter()
    extra, counters, before = [0.0], [], {}

    def seen(module: nn.Module, args: tuple[Any, ...]) -> None:  # an RNN: what the counter has before its call
        before[id(module)] = counters[0].get_total_flops() if counters else 0

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        calls[id(module)] += 1
        extra[0] += _extra_flops(module, args, output)
        if isinstance(module, nn.RNNBase) and counters:  # its own count instead of the part the counter saw
            extra[0] += recurrent_flops(module, args) - (counters[0].get_total_flops() - before.pop(id(module), 0))

    modules = list(model.modules())
    training = [m.training for m in modules]
    pruned = [(m, n, m.__dict__.get(n)) for m in modules for n in pruned_names(m)]
    handles, fastpath = [], _MHA.get_fastpath_enabled() if _MHA is not None else None
    try:
        handles = [m.register_forward_hook(hook) for m in modules]
        handles += [m.register_forward_pre_hook(seen) for m in modules if isinstance(m, nn.RNNBase)]
        model.eval()
        if _MHA is not None:
            _MHA.set_fastpath_enabled(False)  # the fused fast paths hide their FLOPs
        args, kwargs = _call_arguments(model, example_input)
        with state_kept(model, notes), torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_FLOP_FORMULAS) as counter:
            counters.append(counter)
            model(*args, **kwargs)
        total = counter.get_total_flops() + extra[0]
    except Exception as exc:
        notes.append(f"forward pass on example_input failed ({type(exc).__name__}: {exc}): FLOPs unknown")
        return None, None
    finally:
        if _MHA is not None:
            _MHA.set_fastpath_enabled(fastpath)
        for handle in handles:
            handle.remove()
        for module, flag in zip(modules, training):
            module.training = flag
        for module, name, value in pruned:
            if value is not None:
                setattr(module, name, value)
    first = _first_tensor(example_input)
    samples = int(first.shape[0]) if first is not None and first.dim() > 0 and first.shape[0] > 0 else 1
    if first is None or first.dim() == 0:
        notes.append("batch size of example_input unknown: FLOPs are per call, taken as one sample")
    notes.append("FLOPs: matmul/conv/attention and bias adds; activations, norms, pooling not counted")
    if any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in modules):
        notes.append("FLOPs of quantized ops other than Linear/Conv (e.g. quantized add) not counted")
    return dict(calls), total / samples
