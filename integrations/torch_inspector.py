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
  Linear/Conv/ConvTranspose modules, which ``FlopCounterMode`` does not see, and ``nn.RNN`` / ``nn.LSTM`` /
  ``nn.GRU`` counted by hand (every time step, layer and direction: the gates' input and recurrent
  products and both bias adds; their fused kernels hide them). Activations, norms,
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

from collections import Counter
from typing import Any

from mlflow_green.errors import MissingExtraError, ModelNotReadyError
from mlflow_green.training.inspection import (
    PRUNED_SPARSITY_THRESHOLD,
    ModelInspector,
    ModelProfile,
    profile_from_tensors,
)

try:
    import torch  # noqa: F401  (the extra's check: the modules below import it too)
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError("torch", "lightning", "The PyTorch integration") from exc

from torch import nn
from torch.nn.parameter import UninitializedTensorMixin
from torch.nn.utils import prune

from mlflow_green.integrations._torch_flops import counted_flops
from mlflow_green.integrations._torch_tensors import TensorInfo, dtype_name, stored_tensors

__all__ = ["PRUNED_SPARSITY_THRESHOLD", "TensorInfo", "TorchInspector"]


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
        if any(isinstance(t, UninitializedTensorMixin) for t in (*model.parameters(), *model.buffers())):
            # the example's pass would initialise them, drawing their weights elsewhere than the training would
            raise ModelNotReadyError(f"{type(model).__name__} has lazy modules not initialised yet (e.g. nn.LazyLinear): "
                                     "profiled once they are (a fit's end), not now")
        if example_input is None:
            example_input = getattr(model, "example_input_array", None)  # LightningModule
        calls, flops = counted_flops(model, example_input, notes, context.get("flop_cache"))
        infos, params = stored_tensors(model, calls, notes)
        weights = [t for t in infos if t.kind == "param"]
        prunable = [t for t in weights if t.ndim >= 2]
        modes = sorted({t.quantization for t in weights if t.quantization})
        if modes:
            n_quantized = sum(t.count for t in weights if t.quantization)
            notes.append(f"quantized weights ({', '.join(modes)}): {n_quantized} values")
        return profile_from_tensors(
            "torch", params=params, weights=weights, prunable=prunable, stored=infos, flops_per_sample=flops,
            quantization_modes=modes, precision=str(precision) if precision else _precision(model, notes),
            notes=notes, pruned=prune.is_pruned(model),
        )

    def tensors(self, model: nn.Module) -> list[TensorInfo]:
        """Every unique stored tensor of ``model`` with its dtype, bits, zeros and units."""
        return stored_tensors(model, None, [])[0]


def _precision(model: nn.Module, notes: list[str]) -> str:
    """The attached Lightning Trainer's precision, else the dominant floating parameter dtype."""
    trainer = model.__dict__.get("_trainer")
    if getattr(trainer, "precision", None):
        return str(trainer.precision)
    dtypes: Counter[str] = Counter()
    for p in model.parameters():
        if p.is_floating_point():
            dtypes[dtype_name(p.dtype)] += p.numel()
    if len(dtypes) > 1:
        notes.append("parameter dtypes differ: " + ", ".join(sorted(dtypes)))
    return dtypes.most_common(1)[0][0] if dtypes else "float32"
