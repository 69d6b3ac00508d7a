"""Where each framework's training gets its GreenCallback when autologging is on.

Each hook runs when its framework is imported (or at ``autolog()`` if it already is) and patches
a point MLflow's own autologging does not patch, so the two coexist in either order and survive
``mlflow.autolog()`` being called (or disabled) again:

- Keras 3: ``keras.callbacks.CallbackList.__init__`` when ``fit`` builds it (``add_history=True``):
  one GreenCallback per model, so a second ``fit`` of the same model continues its totals.
- Lightning (``lightning.pytorch`` and ``pytorch_lightning``): ``Trainer.__init__``, and ``fit`` /
  ``validate`` / ``test`` / ``predict`` for trainers built before ``autolog()``: one GreenCallback
  per trainer (a ``validate``, ``test`` or ``predict`` alone makes a complete measured run).
- Hugging Face: ``CallbackHandler.on_init_end`` (the end of every ``Trainer.__init__``: its
  ``evaluate()`` / ``predict()`` outside ``train()`` are measured too) and ``on_train_begin`` (the
  start of every ``Trainer.train``, for trainers built before ``autolog()``) — ``Trainer``,
  ``Seq2SeqTrainer`` and any subclass: one GreenCallback per trainer.

A training that already has a GreenCallback (the user's own) is left as it is.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

from mlflow_green.autologging import state
from mlflow_green.autologging.patches import patch
from mlflow_green.measure.signal_safety import passes_through

logger = logging.getLogger(__name__)

_keras_callbacks: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _new_callback(framework: str, callback_class: type) -> Any | None:
    """A callback with the ``autolog`` options it accepts; None (and a warning) if that fails."""
    try:
        return callback_class(**state.options_for(callback_class))
    except Exception as exc:  # options were validated at autolog(); never break the training
        logger.warning("mlflow-green: autolog could not add its callback to this %s training: %s", framework, exc)
        return None


# -- Keras ------------------------------------------------------------------------------------------
def keras_hook(module: ModuleType) -> None:
    """Patch ``keras.callbacks.CallbackList.__init__`` (``module`` is ``keras``)."""
    patch(module.callbacks.CallbackList, "__init__", _keras_callback_list_init)


def _keras_callback_list_init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: Any, callbacks: Any = None, add_history: bool = False, add_progbar: bool = False,
                 model: Any = None, **params: Any) -> None:
        if add_history and model is not None and state.is_enabled():  # add_history=True: built by fit
            callbacks = _with_keras_callback(callbacks, model)
        original(self, callbacks=callbacks, add_history=add_history, add_progbar=add_progbar, model=model, **params)

    return passes_through(__init__)


def _with_keras_callback(callbacks: Any, model: Any) -> Any:
    from mlflow_green.integrations.keras import GreenCallback

    items = [] if callbacks is None else list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
    if any(isinstance(cb, GreenCallback) for cb in items):
        return callbacks
    try:
        callback = _keras_callbacks.get(model)
    except TypeError:  # a model that cannot be weakly referenced: one callback per fit
        callback = None
    if callback is None:
        callback = _new_callback("Keras", GreenCallback)
        if callback is None:
            return callbacks
        try:
            _keras_callbacks[model] = callback
        except TypeError:
            pass
    return [*items, callback]


# -- Lightning ---------------------------------------------------------------------------------------
def lightning_hook(module: ModuleType) -> None:
    """Patch ``Trainer`` of ``lightning.pytorch`` or ``pytorch_lightning`` (``module``)."""
    trainer_class = module.Trainer
    package = module.__name__

    def make_init(original: Callable[..., None]) -> Callable[..., None]:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            if state.is_enabled():
                _attach_lightning(self, package)

        return passes_through(__init__)

    def make_entry(original: Callable[..., Any]) -> Callable[..., Any]:
        def entry(self: Any, *args: Any, **kwargs: Any) -> Any:
            if state.is_enabled():
                _attach_lightning(self, package)
            return original(self, *args, **kwargs)

        return passes_through(entry)

    patch(trainer_class, "__init__", make_init)
    for name in ("fit", "validate", "test", "predict"):
        patch(trainer_class, name, make_entry)


def _attach_lightning(trainer: Any, package: str) -> None:
    if package == "pytorch_lightning":
        from mlflow_green.integrations.pytorch_lightning import GreenCallback
    else:
        from mlflow_green.integrations.lightning import GreenCallback
    from mlflow_green.integrations._lightning_impl import GreenCallbackMixin

    callbacks = getattr(trainer, "callbacks", None)
    if not isinstance(callbacks, list) or any(isinstance(cb, GreenCallbackMixin) for cb in callbacks):
        return
    callback = _new_callback("Lightning", GreenCallback)
    if callback is None:
        return
    # before the checkpoint callbacks (Lightning keeps them last so that they save the others' state)
    index = next((i for i, cb in enumerate(callbacks) if type(cb).__name__ == "ModelCheckpoint"), len(callbacks))
    callbacks.insert(index, callback)


# -- Hugging Face ------------------------------------------------------------------------------------
def transformers_hook(module: ModuleType) -> None:
    """Patch ``CallbackHandler.on_init_end`` and ``on_train_begin`` (``module`` is ``transformers.trainer_callback``)."""

    def make_event(original: Callable[..., Any]) -> Callable[..., Any]:
        def event(self: Any, args: Any, train_state: Any, control: Any) -> Any:
            if state.is_enabled():
                _attach_transformers(self)  # added before the event, so the new callback receives it
            return original(self, args, train_state, control)

        return passes_through(event)

    patch(module.CallbackHandler, "on_init_end", make_event)
    patch(module.CallbackHandler, "on_train_begin", make_event)


def transformers_trainer_hook(module: ModuleType) -> None:
    """Patch ``Trainer._inner_training_loop`` (``module`` is ``transformers.trainer``). A Trainer made before
    ``autolog()`` gets its callback only as its ``train()`` runs, too late for the wrapper of ``train`` the callback
    puts on its instance; through this one the run still ends as the training returns or raises, not up to two
    seconds later (the watch of its frame). The loop, not ``train`` itself: MLflow's own autologging patches
    ``Trainer.train``, and restores what it found there when it is turned off."""

    def make_loop(original: Callable[..., Any]) -> Callable[..., Any]:
        def inner_training_loop(self: Any, *args: Any, **kwargs: Any) -> Any:
            from mlflow_green.integrations._hf_trainer import train_wrapped, watched_train

            if not state.is_enabled() or train_wrapped(self):  # the instance's wrapper of train() sees its end
                return original(self, *args, **kwargs)
            return watched_train(self, original, self, *args, **kwargs)

        return passes_through(inner_training_loop)

    patch(module.Trainer, "_inner_training_loop", make_loop)


def _attach_transformers(handler: Any) -> None:
    from mlflow_green.integrations.transformers import GreenCallback

    if any(isinstance(cb, GreenCallback) for cb in handler.callbacks):
        return
    callback = _new_callback("Hugging Face", GreenCallback)
    if callback is not None:
        handler.add_callback(callback)


HOOKS: dict[str, tuple[str, Callable[[ModuleType], None]]] = {
    "keras": ("keras", keras_hook),
    "lightning": ("lightning.pytorch", lightning_hook),
    "pytorch_lightning": ("pytorch_lightning", lightning_hook),
    "transformers": ("transformers.trainer_callback", transformers_hook),
    "transformers (its training loop)": ("transformers.trainer", transformers_trainer_hook),
}
"""Framework → (module whose import triggers the hook, hook)."""


def forget_callbacks() -> None:
    """Drop the per-model Keras callbacks (new options apply to the next fit)."""
    _keras_callbacks.clear()
