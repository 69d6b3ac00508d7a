"""Waiting for queued GPU work at window boundaries, so that a window's energy belongs to it.

CUDA runs kernels asynchronously: when an epoch's last step returns, its work may still be
queued on the GPU, and without a synchronisation its energy would be read into the next window.
The callbacks give the tracker a ``synchronize`` callable, called before counters are read.

- PyTorch (Lightning, Keras on the torch backend): ``torch.cuda.synchronize`` on the device.
- TensorFlow (Keras on the tensorflow backend): ``tf.test.experimental.sync_devices``.
- JAX: no cheap device-wide barrier exists (``block_until_ready`` needs the arrays), so windows
  are not synchronised on the jax backend; their boundaries may be off by the queued work.

Example:
    >>> torch_synchronizer("cpu") is None
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def torch_synchronizer(device: Any) -> Callable[[], None] | None:
    """``torch.cuda.synchronize(device)`` for a CUDA device, else None (nothing queued on a CPU)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None

    def synchronize() -> None:
        if torch.cuda.is_initialized():  # never initialise CUDA just to wait on it
            torch.cuda.synchronize(device)

    return synchronize


def keras_synchronizer(backend: str | None = None) -> Callable[[], None] | None:
    """The device barrier of a Keras backend (default: the one in use) when it runs on a GPU; else None."""
    try:
        if backend is None:
            import keras

            backend = keras.backend.backend()
        if backend == "torch":
            import torch

            return torch_synchronizer("cuda") if torch.cuda.is_available() else None
        if backend == "tensorflow":
            import tensorflow as tf

            sync = getattr(getattr(tf.test, "experimental", None), "sync_devices", None)
            return sync if sync is not None and tf.config.list_physical_devices("GPU") else None
    except Exception:
        return None
    return None
