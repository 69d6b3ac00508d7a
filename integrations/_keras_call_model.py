"""The model of the call a Keras callback measures — not whichever model Keras gave the callback last.

Keras gives a callback its model (``set_model``) as each call's ``CallbackList`` is made, and its ``model`` property
reads that (on JAX syncing that model's state first). One callback given to two calls at once in two threads measures
the first; the second's ``CallbackList`` still gave it its model, and the measured call's later hooks — and the thread
that ends a fit Keras's own code left — read that model: its parameters logged as the measured model's, its counters
read for the samples, a budget stop set on it, and on JAX its state synced from the wrong thread in the middle of its
step (the other call failed: "Buffer has been deleted or donated"). A ``CallbackList`` the user built (``model=`` one
model) and passed to another model's ``fit`` gets no ``set_model`` at all.

:class:`CallModelMixin` takes the measured call's model as the call is claimed: the ``self`` of Keras's running
``fit`` / ``evaluate`` / ``predict`` (the model whose method runs the hook), else — a ``CallbackList`` driven by the
user's own loop — the one Keras gave the callback. It stays the callback's model after the call (what ``log_model()``
inspects by default) until the next measured call.
"""

from __future__ import annotations

import logging
from typing import Any

import keras

from mlflow_green.integrations._keras_frames import caller_frame
from mlflow_green.training.inspection import ModelProfile
from mlflow_green.training.inspectors import inspect_model

logger = logging.getLogger(__name__)


class CallModelMixin:
    """The Keras callback's measured model (see the module docstring)."""

    _measured: Any = None  # the measured call's model (the last measured call's after it); None: none taken yet
    model: Any  # Keras's, from the callback's base class (``_model`` as Keras gave it, no sync)
    _model: Any
    _claim: Any  # the thread whose call the callback measures (``_keras_frames.CallClaim``)

    def _take_call_model(self, method: str) -> Any:
        """As a call is claimed (its first hook, in its thread): the model whose ``method`` runs it, synced."""
        frame = caller_frame(method)
        model = frame.f_locals.get("self") if frame is not None else None
        self._measured = model if model is not None and hasattr(model, "stop_training") else None
        return self._synced_model()

    @property
    def _call_model(self) -> Any:
        """The measured call's model as it is (not synced: for an attribute of the model object itself)."""
        return self._measured if self._measured is not None else self._model

    def _synced_model(self) -> Any:
        """The measured call's model, on JAX with its state synced (as Keras's ``Callback.model`` syncs the model it
        was given); none taken yet: Keras's."""
        model = self._measured
        if model is None:
            return self.model
        if keras.backend.backend() == "jax" and hasattr(model, "jax_state_sync"):
            model.jax_state_sync()
        return model

    def _last_model(self) -> Any:
        """``log_model()``'s default: the last measured call's model — synced unless a call this callback measures runs
        in another thread now (on JAX a sync from here would take that call's state from under its step)."""
        return self._call_model if self._claim.held_elsewhere() else self._synced_model()

    def _profile(self) -> ModelProfile | None:
        try:
            return inspect_model(self._synced_model())
        except Exception as exc:  # measurement never crashes training
            logger.warning("mlflow-green: could not inspect the model: %s", exc)
            return None


__all__ = ["CallModelMixin"]
