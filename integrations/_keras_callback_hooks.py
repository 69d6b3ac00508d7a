"""The hooks of single callbacks in a watched Keras call's list (a mixin of
:class:`~mlflow_green.integrations._keras_guard.CallGuard`).

Two kinds, each restored with everything else the guard wrapped:

- the start hook of the callbacks after ours (``on_train_begin`` …), for that one call: Keras calls them
  after ours returns, in the dispatch the list's wrapped hooks came too late for;
- the batch hooks a callback has of its own (a ``ModelCheckpoint`` saving every few batches, a progress
  bar, a ``LambdaCallback``): an exception there ends the call at once. The list's own batch hooks are
  not wrapped (only ``on_train_batch_end`` where a budget may stop training at a batch's end), and a
  callback whose batch hooks all do nothing (``History``, ours) gets no wrapper: with the callbacks
  Keras adds by itself, nothing of ours runs between two steps but the step function's wrapper.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from mlflow_green.integrations._keras_batch_list import BATCH_HOOKS, does_nothing_per_batch
from mlflow_green.measure.signal_safety import passes_through


class CallbackHooks:
    """Wraps hooks of single callbacks (needs the guard's ``_callbacks``, ``_set``, ``_mark``, ``_ours``,
    ``_restore`` and ``abort``)."""

    _callbacks: Any  # the call's CallbackList

    def watch_later_starts(self, ours: Any, hook: str = "on_train_begin") -> None:
        """Watch, for this one call each, the start ``hook`` of the callbacks after ``ours`` in the call's list:
        Keras calls them after ours returns, in the dispatch the list's wrapped hooks came too late for (a
        ``CSVLogger`` that cannot open its file): an exception there ends the call at once, not a watch's look later."""
        listed = list(getattr(self._callbacks, "callbacks", None) or [])
        for callback in listed[next((i for i, c in enumerate(listed) if c is ours), len(listed)) + 1:]:
            original = getattr(callback, hook, None)
            if original is not None and not self._ours(original):
                self._set(callback, hook, self._mark(passes_through(self._started_once(callback, hook, original)), original))

    def _started_once(self, owner: Any, hook: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def started(*args: Any, **kwargs: Any) -> Any:
            self._restore(owner, hook)  # its own again from now on (a later call, a probe's)
            try:
                return original(*args, **kwargs)
            except BaseException as exc:
                self.abort(exc)
                raise

        return started

    def watch_batch_hooks(self, callbacks: Any) -> None:
        """Wrap, on each callback of the call's list, the batch hooks it has of its own (an exception there ends the
        call); the list's batch hooks are left as they are, and a callback that does nothing per batch (``History``,
        ours) costs no wrapper: the hot path stays Keras's own."""
        thread = threading.get_ident()
        for callback in list(getattr(callbacks, "callbacks", None) or []):
            if does_nothing_per_batch(callback):
                continue
            for hook in BATCH_HOOKS:
                original = getattr(callback, hook, None)
                if callable(original) and not getattr(original, "_is_default", False) and not self._ours(original):
                    self._set(callback, hook, self._mark(passes_through(self._raising_seen(original, thread)), original))

    def _raising_seen(self, original: Callable[..., Any], thread: int) -> Callable[..., Any]:
        def seen(*args: Any, **kwargs: Any) -> Any:
            try:
                return original(*args, **kwargs)
            except BaseException as exc:
                if threading.get_ident() == thread:  # not the same callback in another thread's call
                    self.abort(exc)
                raise

        return seen


__all__ = ["CallbackHooks"]
