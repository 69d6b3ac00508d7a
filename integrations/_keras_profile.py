"""When the Keras callback logs the model's profile: at the fit's start if the model is built, else once it is.

TensorFlow builds a subclassed model, or a ``Sequential`` without ``keras.Input``, in its first training step,
after ``on_train_begin``: profiled there it has no variables (0 parameters, no FLOPs). Its profile is then taken at
the first epoch's end, and its metrics go at that epoch's step (torch and JAX build it before ``on_train_begin``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def log_built_profile(session: Any, inspect: Callable[[], Any]) -> bool:
    """Log the model's profile (``inspect()``) into ``session`` if the model is built; False, nothing logged, if it
    is not yet (no parameters). True too when it cannot be inspected at all (nothing to wait for)."""
    profile = inspect()
    if profile is not None and not profile.params:
        return False
    if profile is not None:
        session.log_profile(profile)
    return True


__all__ = ["log_built_profile"]
