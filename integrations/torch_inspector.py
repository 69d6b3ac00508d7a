"""Compression metadata of PyTorch models: parameters, sparsity, quantization, size, FLOPs.

What is counted (see :class:`mlflow_green.training.inspection.ModelProfile` for the fields):

* **Tensors** are the parameters and persistent buffers of every module, plus the packed
  weights and biases of quantized modules (``module.weight()`` / ``module.bias()``),
  de-duplicated by identity. Non-persistent buffers are not in a checkpoint: not counted.
* **Pruning** (``torch.nn.utils.prune``): a pruned ``weight`` is one tensor, valued
  ``weight_orig * weight_mask``; the mask buffer is pruning-API scaffolding, counted nowhere
  (a model reads the same before and after ``prune.remove``).
* ``params`` counts every parameter once per *use*: per call of each module holding it in the
  forward pass on the example input (forward hooks count calls), so tied weights (one
  ``Parameter`` in two modules) and a module called twice count twice. A module not called, or
  any module without an example input, counts once per registration in the module tree.
  ``params_unique``: each stored parameter once (buffers such as BatchNorm statistics are not
  parameters). ``params_trainable``: unique with ``requires_grad`` (never packed weights).
* ``sparsity = 1 - nonzero / total`` over prunable weights: parameters of 2+ dimensions
  (Linear, Conv, Embedding, RNN, custom matrices); 1-D biases and norm scales are left out.
  ``params_nonzero``: non-zero values of all parameters, masks applied (a quantized value is
  zero at its zero point). ``pruned``: a prune mask exists or ``sparsity >=
  PRUNED_SPARSITY_THRESHOLD``. ``structured_sparsity``: share of all-zero output units (Linear
  rows, Conv filters, ConvTranspose output channels, float or quantized); embedding rows are
  not units.
* **Quantization**: ``qint8``/``quint8`` weights give ``int8``, ``quint4x2`` ``int4``, float16
  dynamic quantization ``float16``, float8 parameters ``float8``. ``half()`` / ``bfloat16``
  models are low precision, not quantized (16 bits, ``quantization`` None). ``weight_bits``:
  mean over unique parameters weighted by size (float biases of quantized layers count at 32
  bits: an int8 Linear(64, 64) reports ~8.4).
* ``size_bytes`` = sum over unique parameters and buffers of ``numel * bits / 8``, packed
  weights at their quantized width plus 8 bytes per scale/zero-point pair.
  ``compressed_size_bytes``: the same, but a tensor with zeros costs ``ceil(nonzero * bits / 8
  + numel / 8)`` (values plus a one-bit-per-value bitmap), capped at its dense size.
* ``flops_per_sample``: one ``torch.no_grad()`` forward pass on ``example_input`` (else the
  LightningModule's ``example_input_array``) under ``FlopCounterMode`` (matmul, conv, attention;
  1 multiply-add = 2 FLOPs) divided by the first dimension of the first input tensor, plus by hand
  bias adds of Linear/Conv (1 FLOP per output value, as the Keras inspector) and quantized
  Linear/Conv/ConvTranspose modules, which ``FlopCounterMode`` does not see. Activations, norms,
  pooling, element-wise and other quantized ops are not counted. The pass runs in eval mode (no
  BatchNorm updates, no dropout); every module's train/eval flag and pruned weight attribute
  are restored. A tuple or list input is positional arguments, a dict keyword arguments
  (Lightning's convention); tensors are moved to the model's device (the model never moves)
  and cast to its floating dtype when all parameters share one. The fused attention fast path
  is switched off for the pass (it hides its matmuls) and restored.
* ``precision``: the ``precision`` context (e.g. ``16-mixed``), else the precision of the
  Trainer a LightningModule is attached to, else the dominant floating parameter dtype.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from mlflow_green.errors import MissingExtraError
from mlflow_green.training.inspection import (
    PRUNED_SPARSITY_THRESHOLD,
    ModelInspector,
    ModelProfile,
    compressed_bytes,
    tensor_totals,
)

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError("torch", "lightning", "The PyTorch integration") from exc

import numpy as np
from torch import nn
from torch.nn.utils import prune
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

try:
    import torch.ao.nn.quantized as _nnq

    _Q_LINEAR: tuple[type, ...] = (_nnq.Linear,)
    _Q_CONV_T: tuple[type, ...] = (_nnq.ConvTranspose1d, _nnq.ConvTranspose2d, _nnq.ConvTranspose3d)
    _Q_CONV: tuple[type, ...] = (_nnq.Conv1d, _nnq.Conv2d, _nnq.Conv3d)
except (ImportError, AttributeError):  # pragma: no cover - eager quantization removed from torch
    _Q_LINEAR = _Q_CONV_T = _Q_CONV = ()

__all__ = ["PRUNED_SPARSITY_THRESHOLD", "TensorInfo", "TorchInspector"]


_QUANT_BITS: Final = {torch.qint8: 8, torch.quint8: 8, torch.qint32: 32, torch.quint4x2: 4, torch.quint2x4: 2}
_PER_CHANNEL: Final = {torch.per_channel_affine, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams}
_CONV_T: Final = (nn.modules.conv._ConvTransposeNd, *_Q_CONV_T)
_UNIT_ROWS: Final = (nn.Linear, nn.modules.conv._ConvNd, *_Q_LINEAR, *_Q_CONV)


@dataclass(frozen=True)
class TensorInfo:
    """One stored tensor as the inspector sees it.

    Attributes:
        name: Path of its first registration, e.g. ``0.weight``.
        kind: ``param`` (parameters and quantized weights/biases) or ``buffer``.
        dtype: Stored dtype, e.g. ``float32``, ``qint8``.
        bits: Bits per stored value.
        count: Number of values.
        nonzero: Values that are not exactly zero (prune mask applied).
        stored_bytes: Dense bytes as stored (quantization scales included).
        trainable: Whether an optimizer may update it.
        quantization: ``int8``, ``float16`` ... for quantized storage, else None.
        units: Output units (rows / filters) of a Linear or Conv weight, 0 for other tensors.
        zero_units: Output units whose weights are all zero.
        ndim: Number of dimensions (2+: a prunable weight matrix or kernel).
    """

    name: str
    kind: str
    dtype: str
    bits: float
    count: int
    nonzero: int
    stored_bytes: int
    trainable: bool
    quantization: str | None = None
    units: int = 0
    zero_units: int = 0
    ndim: int = 0

    @property
    def compressed_bytes(self) -> int:
        """Bytes with sparse storage: non-zero values plus a bitmap, capped at dense."""
        return compressed_bytes(self.count, self.nonzero, self.bits, self.stored_bytes)


class TorchInspector(ModelInspector):
    """Reads a :class:`~mlflow_green.training.inspection.ModelProfile` from ``torch.nn.Module`` models.

    LightningModules are modules too; their ``example_input_array`` is used for FLOPs when no
    ``example_input`` is passed.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 10))
        >>> profile = TorchInspector().inspect(model, example_input=torch.zeros(4, 64))
        >>> profile.params, profile.flops_per_sample  # 64*10 + 10; 2*64*10 + 10 (bias adds)
        (650, 1290.0)
    """

    name = "torch"

    def supports(self, model: Any) -> bool:
        """True for ``torch.nn.Module`` instances (LightningModules included)."""
        try:
            return isinstance(model, nn.Module)
        except Exception:
            return False

    def inspect(
        self, model: Any, *, example_input: Any = None, precision: str | None = None, **context: Any
    ) -> ModelProfile:
        """Profile ``model``.

        Args:
            model: A ``torch.nn.Module``; it is left in its train/eval mode, on its device.
            example_input: One batch for the FLOP-counting forward pass (a tensor, a tuple of
                positional arguments or a dict of keyword arguments).
            precision: Compute precision to report (e.g. the Trainer's ``16-mixed``).
            **context: ``flop_cache``: a dict the caller keeps between inspections of one model;
                the FLOP-counting pass is skipped when the model's structure (modules, parameter
                shapes and dtypes, prune masks) and the example's shapes are unchanged. Others ignored.
        """
        notes: list[str] = []
        if isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile wrapper
            model = model._orig_mod
        if example_input is None:
            example_input = getattr(model, "example_input_array", None)  # LightningModule
        calls, flops = _counted_flops(model, example_input, notes, context.get("flop_cache"))
        infos, params = _tensors(model, calls, notes)
        weights = [t for t in infos if t.kind == "param"]
        prunable = [t for t in weights if t.ndim >= 2]
        totals = tensor_totals(weights, prunable, infos)
        modes = sorted({t.quantization for t in weights if t.quantization})
        if modes:
            n_quantized = sum(t.count for t in weights if t.quantization)
            notes.append(f"quantized weights ({', '.join(modes)}): {n_quantized} values")
        return ModelProfile(
            framework="torch",
            params=params,
            **totals,
            flops_per_sample=flops,
            pruned=prune.is_pruned(model) or totals["sparsity"] >= PRUNED_SPARSITY_THRESHOLD,
            quantization="+".join(modes) or None,
            precision=str(precision) if precision else _precision(model, notes),
            shared_weights=params > totals["params_unique"],
            notes=tuple(notes),
        )

    def tensors(self, model: nn.Module) -> list[TensorInfo]:
        """Every unique stored tensor of ``model`` with its dtype, bits, zeros and units."""
        return _tensors(model, None, [])[0]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _pruned_names(module: nn.Module) -> set[str]:
    return {h._tensor_name for h in module._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)}


class _Slot(NamedTuple):
    """A tensor a module holds itself: ``values`` as used, ``stored`` the dtype as stored."""

    key: Hashable
    name: str
    kind: str
    values: torch.Tensor
    stored: torch.dtype
    trainable: bool = False
    packed: bool = False


def _slots(module: nn.Module) -> Iterator[_Slot]:
    """Parameters (pruned ones with their mask applied), persistent buffers, packed weights."""
    pruned = _pruned_names(module)
    for name, p in module._parameters.items():
        if p is None:
            continue
        base, values = name.removesuffix("_orig"), p.detach()
        if base != name and base in pruned and module._buffers.get(f"{base}_mask") is not None:
            name, values = base, values * module._buffers[f"{base}_mask"]
        yield _Slot(id(p), name, "param", values, p.dtype, p.requires_grad)
    for name, b in module._buffers.items():
        skip = name in module._non_persistent_buffers_set or (name.endswith("_mask") and name[:-5] in pruned)
        if b is not None and not skip:
            yield _Slot(id(b), name, "buffer", b.detach(), b.dtype)
    if not hasattr(module, "_packed_params"):
        return
    for name in ("weight", "bias"):  # packed weights of quantized modules: methods, not tensors
        value = getattr(module, name)() if callable(getattr(type(module), name, None)) else None
        if isinstance(value, torch.Tensor):
            stored = getattr(module._packed_params, "dtype", None) if name == "weight" else None
            stored = stored if isinstance(stored, torch.dtype) else value.dtype
            yield _Slot((id(module), name), name, "param", value.detach(), stored, packed=True)


def _unit_rows(module: nn.Module, name: str, dense: torch.Tensor) -> torch.Tensor | None:
    """``dense`` as (output units, values per unit) for Linear/Conv weights, else None."""
    if name != "weight" or dense.dim() < 2 or not isinstance(module, _UNIT_ROWS):
        return None
    if isinstance(module, _CONV_T):  # weight[in, out / groups, *kernel]
        g = int(module.groups)
        grouped = dense.reshape(g, dense.shape[0] // g, dense.shape[1], -1).transpose(1, 2)
        return grouped.reshape(g * dense.shape[1], -1)
    return dense.reshape(dense.shape[0], -1)


def _info(module: nn.Module, slot: _Slot, path: str) -> TensorInfo:
    name, values, stored = slot.name, slot.values, slot.stored
    dense = values.dequantize() if values.is_quantized else values
    bits = _QUANT_BITS.get(stored) or stored.itemsize * 8
    count = values.numel()
    quantization = None
    if values.is_quantized or (slot.packed and stored.is_floating_point and bits < 32):
        quantization = f"int{bits}" if stored in _QUANT_BITS else _dtype_name(stored)
    elif stored.is_floating_point and bits == 8:
        quantization = "float8"
    rows = _unit_rows(module, name, dense)
    per_channel = values.is_quantized and values.qscheme() in _PER_CHANNEL
    scales = (values.q_per_channel_scales().numel() if per_channel else 1) if values.is_quantized else 0
    return TensorInfo(
        name=f"{path}.{name}" if path else name,
        kind=slot.kind,
        dtype=_dtype_name(stored),
        bits=float(bits),
        count=count,
        nonzero=_nonzero(dense),
        stored_bytes=math.ceil(count * bits / 8) + 8 * scales,  # float32 scale + int32 zero point
        trainable=slot.trainable,
        quantization=quantization,
        units=rows.shape[0] if rows is not None else 0,
        zero_units=_zero_rows(rows) if rows is not None else 0,
        ndim=values.dim(),
    )


def _host_array(t: torch.Tensor) -> Any:
    """A NumPy view of a CPU tensor NumPy can read (its reductions are far cheaper on small tensors), else None."""
    if t.device.type != "cpu" or t.dtype in (torch.bfloat16,) or t.is_quantized or t.requires_grad:
        return None
    try:
        return t.numpy()
    except (TypeError, RuntimeError):
        return None


def _nonzero(dense: torch.Tensor) -> int:
    array = _host_array(dense)
    return int(np.count_nonzero(array)) if array is not None else int(torch.count_nonzero(dense))


def _zero_rows(rows: torch.Tensor) -> int:
    """Rows (output units) whose values are all zero."""
    array = _host_array(rows)
    if array is not None:
        return int((~array.any(axis=1)).sum())
    return int((~rows.ne(0).any(dim=1)).sum())


def _tensors(model: nn.Module, calls: dict[int, int] | None, notes: list[str]) -> tuple[list[TensorInfo], int]:
    """(unique tensors, parameters counted once per use of the module holding them)."""
    registrations: Counter[int] = Counter()
    modules: dict[int, tuple[str, nn.Module]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        registrations[id(module)] += 1
        modules.setdefault(id(module), (path, module))
    infos: dict[Hashable, TensorInfo] = {}
    params = 0
    for mid, (path, module) in modules.items():
        uses = (calls or {}).get(mid) or registrations[mid]
        if hasattr(module, "_all_weight_values"):
            notes.append(f"weights of quantized {type(module).__name__} {path!r} not read: not counted")
        try:
            slots = list(_slots(module))
        except Exception as exc:
            notes.append(f"tensors of {path or 'the model'} not read ({type(exc).__name__}: {exc})")
            continue
        for slot in slots:
            if slot.key not in infos:
                try:
                    infos[slot.key] = _info(module, slot, path)
                except Exception as exc:
                    notes.append(f"tensor {path}.{slot.name} skipped ({type(exc).__name__}: {exc})")
                    continue
            if slot.kind == "param":
                params += infos[slot.key].count * uses
    return list(infos.values()), params


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
    if not isinstance(module, (*_Q_LINEAR, *_Q_CONV, *_Q_CONV_T)):
        return 0.0
    bias = float(out.numel()) if module.bias() is not None else 0.0
    if isinstance(module, _Q_LINEAR):
        return 2.0 * out.numel() * module.in_features + bias
    k = math.prod(module.kernel_size)
    if isinstance(module, _Q_CONV_T):
        x = _first_tensor(args)  # every input value meets out_channels / groups kernels
        return 2.0 * (x.numel() if x is not None else 0) * (module.out_channels // module.groups) * k + bias
    return 2.0 * out.numel() * (module.in_channels // module.groups) * k + bias


def _counted_flops(
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
         bool(_pruned_names(m)))
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
    extra = [0.0]

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        calls[id(module)] += 1
        extra[0] += _extra_flops(module, args, output)

    modules = list(model.modules())
    training = [m.training for m in modules]
    pruned = [(m, n, m.__dict__.get(n)) for m in modules for n in _pruned_names(m)]
    handles, fastpath = [], _MHA.get_fastpath_enabled() if _MHA is not None else None
    try:
        handles = [m.register_forward_hook(hook) for m in modules]
        model.eval()
        if _MHA is not None:
            _MHA.set_fastpath_enabled(False)  # the fused fast paths hide their FLOPs
        args, kwargs = _call_arguments(model, example_input)
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_FLOP_FORMULAS) as counter:
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
    if any(isinstance(m, nn.RNNBase) for m in modules):
        notes.append("RNN/LSTM/GRU FLOPs (fused ops) not counted")
    if any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in modules):
        notes.append("FLOPs of quantized ops other than Linear/Conv (e.g. quantized add) not counted")
    return dict(calls), total / samples


def _precision(model: nn.Module, notes: list[str]) -> str:
    """The attached Lightning Trainer's precision, else the dominant floating parameter dtype."""
    trainer = model.__dict__.get("_trainer")
    if getattr(trainer, "precision", None):
        return str(trainer.precision)
    dtypes: Counter[str] = Counter()
    for p in model.parameters():
        if p.is_floating_point():
            dtypes[_dtype_name(p.dtype)] += p.numel()
    if len(dtypes) > 1:
        notes.append("parameter dtypes differ: " + ", ".join(sorted(dtypes)))
    return dtypes.most_common(1)[0][0] if dtypes else "float32"

