"""Keeps a GreenCallback out of its fit's per-batch hook calls.

Keras calls every callback's batch hooks at every step (``on_train_batch_begin`` / ``_end``, and the
validation's and predict's), and GreenCallback does nothing there: two calls per step, each a few microseconds
right after the framework's step has filled the processor's caches with its own. While a fit runs, the fit's
``CallbackList`` holds, between its hooks, its callbacks without ours — the batch hooks call the others only —
and every other hook of the list (epoch begin and end, validation begin and end, predict's, the fit's end)
runs with the whole list, in the order Keras made it: :class:`~mlflow_green.integrations._keras_guard.CallGuard`
wraps those hooks and calls :meth:`BatchList.whole` before and :meth:`BatchList.slim` after each. The list
taken as whole is re-read after each such hook (a callback standing aside replaces its entry). When the
measurement ends — however the fit ends — :meth:`BatchList.restore` puts the whole list back. A subclass of
GreenCallback with batch hooks of its own stays in the list (:func:`does_nothing_per_batch`).
"""

from __future__ import annotations

from typing import Any


class BatchList:
    """The batch hooks of ``owner`` (a Keras ``CallbackList``) skip ``ours``; its other hooks see every callback.

    Example:
        >>> class Listed:
        ...     callbacks = ["history", "ours", "checkpoint"]
        >>> owner = Listed()
        >>> batches = BatchList(owner, "ours")
        >>> batches.slim(); owner.callbacks
        ['history', 'checkpoint']
        >>> batches.whole(); owner.callbacks
        ['history', 'ours', 'checkpoint']
        >>> batches.slim(); batches.restore(); owner.callbacks
        ['history', 'ours', 'checkpoint']
    """

    def __init__(self, owner: Any, ours: Any) -> None:
        self.owner, self.ours = owner, ours
        self._whole: list[Any] | None = None
        self._others: list[Any] | None = None
        self._active = True

    def whole(self) -> None:
        """Before a hook other than a batch hook: the whole list."""
        if self._others is not None and self.owner.callbacks is self._others:
            self.owner.callbacks = self._whole

    def slim(self) -> None:
        """After such a hook: the list without ours, for the batch hooks until the next one."""
        if not self._active:
            return
        listed = self.owner.callbacks
        if listed is self._others:
            listed = self._whole
        if not isinstance(listed, list) or not any(c is self.ours for c in listed):
            return
        others = [c for c in listed if c is not self.ours]
        try:
            self.owner.callbacks = others
        except Exception:  # a list whose callbacks cannot be set (a subclass's read-only property): left whole
            self._active = False
            return
        self._whole, self._others = listed, others

    def restore(self) -> None:
        """The measurement ends: the whole list back for good."""
        self._active = False
        self.whole()
        self._whole = self._others = None


def no_batch_work(batch: int, logs: dict[str, Any] | None = None) -> None:
    """A GreenCallback's per-batch hooks, called where its fit's list is not slimmed (``evaluate``, ``predict``, a
    ``CallbackList`` driven by the user's own loop): nothing is done there (Keras's own ``on_train_batch_begin`` would
    call ``on_batch_begin`` in turn: two calls a step instead of one)."""


no_batch_work._is_default = True  # type: ignore[attr-defined]  # as Keras marks its own do-nothing hooks: a
# callback list whose batch hooks all do nothing dispatches them asynchronously (torch, JAX); ours must not stop that

BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin",
               "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end")


def does_nothing_per_batch(callback: Any) -> bool:
    """True if every batch hook of ``callback`` is :func:`no_batch_work` or Keras's own do-nothing one (a subclass may
    override them: then it is called at every batch as usual)."""
    return all(getattr(getattr(callback, hook, None), "_is_default", False) for hook in BATCH_HOOKS)


_ASYNC_ENDS = {"on_train_batch_end": ("_async_train", ("on_batch_end", "on_train_batch_end")),
               "on_test_batch_end": ("_async_test", ("on_test_batch_end",)),
               "on_predict_batch_end": ("_async_predict", ("on_predict_batch_end",))}


def raising_async_batch_ends(callbacks: Any) -> set[str]:
    """The batch-end hooks of ``callbacks`` (a Keras ``CallbackList``) that Keras runs in a thread pool (torch, JAX:
    every callback with such a hook of its own says ``async_safe``) and that some callback has of its own: what one
    raises there comes out of the list's hook at a later batch (or the epoch's end) in the caller's thread.

    Example:
        >>> class Listed:
        ...     _async_train, _async_test, callbacks = True, True, []
        >>> raising_async_batch_ends(Listed())
        set()
    """
    listed = list(getattr(callbacks, "callbacks", None) or [])
    return {hook for hook, (flag, own) in _ASYNC_ENDS.items() if getattr(callbacks, flag, False)
            and any(_own(getattr(c, name, None)) for c in listed for name in own)}


def _own(hook: Any) -> bool:
    return callable(hook) and not getattr(hook, "_is_default", False)


__all__ = ["BATCH_HOOKS", "BatchList", "does_nothing_per_batch", "no_batch_work", "raising_async_batch_ends"]
