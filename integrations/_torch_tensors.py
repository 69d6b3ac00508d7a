"""The stored tensors of a torch model: dtype, bits, zeros, output units, and parameters per use.

Parameters (pruned ones with their mask applied), persistent buffers and the packed weights of
quantized modules, each once (by identity); parameters are also counted once per call of each
module holding them. The rules are in :mod:`mlflow_green.integrations.torch_inspector`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from mlflow_green.training.inspection import compressed_bytes

try:
    import torch.ao.nn.quantized as nnq

    Q_LINEAR: tuple[type, ...] = (nnq.Linear,)
    Q_CONV_T: tuple[type, ...] = (nnq.ConvTranspose1d, nnq.ConvTranspose2d, nnq.ConvTranspose3d)
    Q_CONV: tuple[type, ...] = (nnq.Conv1d, nnq.Conv2d, nnq.Conv3d)
except (ImportError, AttributeError):  # pragma: no cover - eager quantization removed from torch
    Q_LINEAR = Q_CONV_T = Q_CONV = ()

_QUANT_BITS: Final = {torch.qint8: 8, torch.quint8: 8, torch.qint32: 32, torch.quint4x2: 4, torch.quint2x4: 2}
_PER_CHANNEL: Final = {torch.per_channel_affine, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams}
_CONV_T: Final = (nn.modules.conv._ConvTransposeNd, *Q_CONV_T)
_UNIT_ROWS: Final = (nn.Linear, nn.modules.conv._ConvNd, *Q_LINEAR, *Q_CONV)


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


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def pruned_names(module: nn.Module) -> set[str]:
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
    pruned = pruned_names(module)
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
        quantization = f"int{bits}" if stored in _QUANT_BITS else dtype_name(stored)
    elif stored.is_floating_point and bits == 8:
        quantization = "float8"
    rows = _unit_rows(module, name, dense)
    per_channel = values.is_quantized and values.qscheme() in _PER_CHANNEL
    scales = (values.q_per_channel_scales().numel() if per_channel else 1) if values.is_quantized else 0
    return TensorInfo(
        name=f"{path}.{name}" if path else name,
        kind=slot.kind,
        dtype=dtype_name(stored),
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


def stored_tensors(model: nn.Module, calls: dict[int, int] | None, notes: list[str]) -> tuple[list[TensorInfo], int]:
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
