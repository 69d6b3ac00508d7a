"""What the profiling forward pass may change, put back: the random generators and the model's buffers.

The FLOPs count runs the model once on an example (:mod:`~mlflow_green.integrations._torch_flops`).
A ``forward`` that draws random numbers outside dropout (noise, a reparameterisation) would take
draws from torch's generator there, and one that updates a buffer (a call counter, running
statistics of its own) would count the pass: a seeded training would then train differently with
the callback than without it. :func:`state_kept` saves both and puts them back after the pass.

Kept: torch's CPU generator and the CUDA generators of the devices the model's tensors are on,
Python's and NumPy's global generators, and every buffer — a buffer replaced by another tensor is
put back, one changed in place gets its values back (buffers over :data:`COPIED_BUFFER_BYTES` in all
are only put back when replaced, and a note says so). Not kept: plain Python attributes a
``forward`` changes (``self.calls += 1`` on an int) and objects it changes in place.

Example:
    >>> import torch
    >>> class Noisy(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.register_buffer("calls", torch.zeros(()))
    ...     def forward(self, x):
    ...         self.calls += 1
    ...         return x + torch.randn_like(x)
    >>> model, notes = Noisy(), []
    >>> _ = torch.manual_seed(0); expected = torch.rand(2); _ = torch.manual_seed(0)
    >>> with state_kept(model, notes):
    ...     _ = model(torch.zeros(3))
    >>> float(model.calls), torch.equal(torch.rand(2), expected), notes
    (0.0, True, [])
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import torch
from torch import nn

COPIED_BUFFER_BYTES: Final = 256 * 1024 * 1024
"""Buffers up to this size in all are copied before the pass (their values put back if it changes them)."""


@contextmanager
def state_kept(model: nn.Module, notes: list[str]) -> Iterator[None]:
    """Run the body with the random generators and ``model``'s buffers put back as they were after it."""
    generators = _generator_states(model)
    buffers = [(owner, name, tensor, _version(tensor)) for owner in model.modules()
               for name, tensor in owner._buffers.items() if tensor is not None]
    copied = sum(t.numel() * t.element_size() for _, _, t, _ in buffers) <= COPIED_BUFFER_BYTES
    values = [t.detach().clone() if copied else None for _, _, t, _ in buffers]
    try:
        yield
    finally:
        _restore_generators(generators)
        changed = False
        for (owner, name, tensor, version), value in zip(buffers, values):
            if owner._buffers.get(name) is not tensor:
                owner._buffers[name] = tensor
            if version is not None and _version(tensor) != version:
                changed = True
                if value is not None:
                    with torch.no_grad():
                        tensor.copy_(value)
        if changed and not copied:
            notes.append("the example pass changed buffers in place, left so (too large to copy)")


def _version(tensor: torch.Tensor) -> int | None:
    """How often ``tensor`` was changed in place; None for an inference tensor (none kept, none put back)."""
    try:
        return tensor._version
    except RuntimeError:
        return None


def _generator_states(model: nn.Module) -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        states["numpy"] = numpy.random.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        devices = {t.device.index for t in (*model.parameters(), *model.buffers()) if t.device.type == "cuda"}
        states["cuda"] = {d: torch.cuda.get_rng_state(d) for d in devices if d is not None}
    return states


def _restore_generators(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    if "numpy" in states:
        sys.modules["numpy"].random.set_state(states["numpy"])
    for device, state in states.get("cuda", {}).items():
        torch.cuda.set_rng_state(state, device)


__all__ = ["COPIED_BUFFER_BYTES", "state_kept"]
