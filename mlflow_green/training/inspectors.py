"""Profiling a model with the registered inspectors (built-in Keras and torch, or a plugin's).

Kept apart from :mod:`mlflow_green.training.inspection` (the profile types), which the built-in
plugin imports: this module asks the plugin manager, so the two never import each other.

Example:
    >>> inspect_model(object()) is None   # no inspector supports a plain object
    True
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mlflow_green.errors import ArgumentTypeError, ModelNotReadyError
from mlflow_green.plugins.manager import inspector_factories
from mlflow_green.training.inspection import ModelInspector, ModelProfile

logger = logging.getLogger(__name__)


def model_inspectors() -> dict[str, Callable[[], ModelInspector]]:
    """Every registered inspector factory by name."""
    return inspector_factories()


def inspect_model(model: Any, **context: Any) -> ModelProfile | None:
    """Profile ``model`` with the first registered inspector that supports it.

    Returns None (and logs why) when no inspector supports it or inspection fails: measurement
    never breaks training.
    """
    for name, factory in model_inspectors().items():
        try:
            inspector = factory()
            if inspector.supports(model):
                return inspector.inspect(model, **context)
        except ModelNotReadyError as exc:  # not a failure: profiled once it is ready
            logger.info("mlflow-green: %s", exc)
            return None
        except Exception as exc:
            logger.warning("mlflow-green: model inspector %r failed: %s", name, exc)
            return None
    logger.info("mlflow-green: no model inspector supports %s", type(model).__name__)
    return None


def require_inspectable(model: Any, expected: str) -> None:
    """Raise :class:`~mlflow_green.errors.ArgumentTypeError` when no registered inspector supports ``model``:
    a model handed to ``log_model`` explicitly (a ``state_dict``, a checkpoint path, None) is the caller's
    mistake, said at once rather than logged as nothing. ``expected`` names what is accepted.

    Example:
        >>> require_inspectable({"weight": 1}, "a torch.nn.Module")
        Traceback (most recent call last):
        ...
        mlflow_green.errors.ArgumentTypeError: model must be a torch.nn.Module, got {'weight': 1} (dict)
    """
    for factory in model_inspectors().values():
        try:
            if factory().supports(model):
                return
        except Exception:  # a broken inspector: inspect_model says so
            return
    raise ArgumentTypeError("model", expected, model)
