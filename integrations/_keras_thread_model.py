"""The Keras callback's model, per thread: each call's hooks see the model of the call in their thread.

Keras gives a callback its model with ``set_model`` as a call's ``CallbackList`` is made, in the thread of that call,
and its ``model`` property reads ``_model`` (on JAX syncing that model's state first). One callback given to two
calls at once in two threads (a module-level callback, a web app serving two trainings) measures the first; the
second's ``CallbackList`` still set its model on the callback, and the measured call's later hooks read that model:
its parameters logged as the measured model's, its counters read for the samples, a budget stop set on it, and on JAX
its state synced from the wrong thread in the middle of its step (the other call failed: "Buffer has been deleted
or donated"). :class:`ThreadModel` makes ``_model`` the one set in the current thread; a thread that set none (a
``log_model()`` after the fits) sees the last one set, as before.

Example:
    >>> class Callback:
    ...     _model = ThreadModel()
    >>> cb = Callback()
    >>> cb._model = "small"
    >>> import threading
    >>> seen = []
    >>> def other_call():
    ...     cb._model = "large"
    ...     seen.append(cb._model)
    >>> thread = threading.Thread(target=other_call); thread.start(); thread.join()
    >>> cb._model, seen
    ('small', ['large'])
"""

from __future__ import annotations

import threading
from typing import Any

_UNSET = object()


class ThreadModel:
    """A data descriptor for a callback's ``_model``: per thread, falling back to the last set in any thread."""

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        state = obj.__dict__
        local = state.get("_thread_models")
        model = getattr(local, "model", _UNSET) if local is not None else _UNSET
        return state.get("_last_model") if model is _UNSET else model

    def __set__(self, obj: Any, model: Any) -> None:
        state = obj.__dict__
        state.setdefault("_thread_models", threading.local()).model = model
        state["_last_model"] = model


def without_thread_models(state: dict[str, Any]) -> dict[str, Any]:
    """A callback's ``__dict__`` for pickling or copying: no model, and no per-thread models (not picklable)."""
    return {key: value for key, value in state.items() if key != "_thread_models"} | {"_last_model": None}


__all__ = ["ThreadModel", "without_thread_models"]
