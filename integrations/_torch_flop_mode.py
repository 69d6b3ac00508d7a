"""A forward pass's total FLOPs, counted as torch's ``FlopCounterMode`` counts them, without its per-module table.

``FlopCounterMode`` keeps a table of FLOPs per module: it enters a ``ModuleTracker`` whose global hooks run a
pytree walk over every module call's inputs and outputs, and adds each operator's count to every enclosing module.
The callback needs the total alone, once per fit, and the tracker was half of that pass's cost (~3 ms of the
5–6 ms a fit of the digits zoo spent in it). :class:`TotalFlopMode` is a ``TorchDispatchMode`` that applies the same
rules to the same operators: the same formulas (torch's ``flop_registry``, plus the caller's, wrapped as
``FlopCounterMode`` wraps them), an operator without a formula first offered its decomposition, the same size and
stride queries passed over. A higher-order operator (``torch.cond``, a Triton kernel) has rules of its own in
``FlopCounterMode``; this mode raises :class:`NeedsFullCounter` there, and the caller counts the pass again with
``FlopCounterMode`` itself (see ``_torch_flops._count_flops``).

Example:
    >>> import torch
    >>> with torch.no_grad(), TotalFlopMode() as mode:
    ...     _ = torch.nn.Linear(4, 3, bias=False)(torch.ones(2, 4))
    >>> mode.get_total_flops()  # 2 samples × 3 outputs × 4 multiply-adds × 2
    48
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry, shape_wrapper

_aten = torch.ops.aten
_QUERIES = frozenset(
    getattr(getattr(_aten, packet, None), overload, None)
    for packet, overload in (
        ("sym_is_contiguous", "default"), ("is_contiguous", "default"), ("is_contiguous", "memory_format"),
        ("is_strides_like_format", "default"), ("is_non_overlapping_and_dense", "default"), ("size", "default"),
        ("sym_size", "default"), ("stride", "default"), ("sym_stride", "default"), ("storage_offset", "default"),
        ("sym_storage_offset", "default"), ("numel", "default"), ("sym_numel", "default"), ("dim", "default"),
    )
) | {torch.ops.prim.layout.default}
"""Size and stride queries of tensors with their own sizes policy: not operators to count (as ``FlopCounterMode``)."""
_DEVICE = torch.ops.prim.device.default


class NeedsFullCounter(RuntimeError):
    """The pass reached a higher-order operator: count it with ``FlopCounterMode``."""


class TotalFlopMode(TorchDispatchMode):
    """Counts the FLOPs of the operators run inside it (see the module docstring).

    Args:
        custom_mapping: formulas of operators torch has none for, taking tensor shapes (as ``FlopCounterMode``'s).
    """

    supports_higher_order_operators = True  # reached here, so that they are handed to FlopCounterMode

    def __init__(self, custom_mapping: dict[Any, Any] | None = None) -> None:
        super().__init__()
        self.total = 0
        self.registry = {**flop_registry, **{op: f if getattr(f, "_get_raw", False) else shape_wrapper(f)
                                             for op, f in (custom_mapping or {}).items()}}

    def get_total_flops(self) -> int:
        """The FLOPs counted so far."""
        return self.total

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _QUERIES:
            return NotImplemented
        if isinstance(func, torch._ops.HigherOrderOperator):
            raise NeedsFullCounter(str(func))
        registry = self.registry
        if func not in registry and func is not _DEVICE:  # offered its decomposition first, as FlopCounterMode does
            with self:
                decomposed = func.decompose(*args, **kwargs)
                if decomposed is not NotImplemented:
                    return decomposed
        out = func(*args, **kwargs)
        formula = registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


__all__ = ["NeedsFullCounter", "TotalFlopMode"]
