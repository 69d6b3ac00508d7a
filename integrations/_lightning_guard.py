"""Our ``on_exception`` runs even when a callback Lightning calls before ours raises in its own.

Lightning calls the callbacks' ``on_exception`` one after another in ``trainer.callbacks`` order; one
that raises (an alerting callback whose endpoint is down) ends the loop, and the trainer skips the
teardown hooks too: without this, a failed fit's run stayed ``RUNNING``, measuring, and the next fit
with the same callback logged into it. For the length of each ``fit`` / ``validate`` / ``test`` /
``predict``, the ``on_exception`` of every earlier callback with one of its own is wrapped (an
instance attribute, removed at the call's end): if it raises, ours runs, then the error propagates.

Example:
    >>> guard = EarlierCallbacksGuard()
    >>> class Trainer:
    ...     callbacks = []
    >>> guard.guard(Trainer(), ours=object())  # nothing before ours: nothing wrapped
    >>> guard.restore()
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


class _Guarded:
    """``callback.on_exception`` that calls ``ours.on_exception`` if it raises (a class: a trainer copied
    or pickled meanwhile stays picklable)."""

    def __init__(self, callback: Any, ours: Any, original: Any) -> None:
        self.callback, self.ours, self.original = callback, ours, original

    def __call__(self, trainer: Any, pl_module: Any, exception: BaseException) -> Any:
        try:
            if self.original is not None:  # the callback's own instance attribute
                return self.original(trainer, pl_module, exception)
            return type(self.callback).on_exception(self.callback, trainer, pl_module, exception)
        except BaseException:
            self.ours.on_exception(trainer, pl_module, exception)
            raise


class EarlierCallbacksGuard:
    """Wraps, then restores, the ``on_exception`` of the callbacks before ours in a trainer's list."""

    def __init__(self) -> None:
        self._wrapped: list[Any] = []

    def guard(self, trainer: Any, ours: Any) -> None:
        """Wrap the ``on_exception`` of each callback before ``ours`` in ``trainer.callbacks`` that has its own."""
        self.restore()
        base = next((cls for cls in type(ours).__mro__ if cls.__name__ == "Callback"), None)
        try:
            for callback in list(getattr(trainer, "callbacks", None) or []):
                if callback is ours:
                    break
                if base is not None and getattr(type(callback), "on_exception", None) is getattr(base, "on_exception", None):
                    continue  # Lightning's own no-op: it cannot raise
                callback.on_exception = _Guarded(callback, ours, callback.__dict__.get("on_exception"))
                self._wrapped.append(callback)
        except Exception as exc:  # a callback that refuses attributes: left as it is
            logger.debug("mlflow-green: could not guard the callbacks' on_exception: %r", exc)

    def restore(self) -> None:
        """Remove the wrappers (each callback's own ``on_exception`` again)."""
        for callback in self._wrapped:
            guarded = callback.__dict__.get("on_exception")
            if isinstance(guarded, _Guarded):
                if guarded.original is not None:
                    callback.on_exception = guarded.original
                else:
                    del callback.on_exception
        self._wrapped = []

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (EarlierCallbacksGuard, ())  # a copy guards nothing until its own next call


__all__ = ["EarlierCallbacksGuard"]
