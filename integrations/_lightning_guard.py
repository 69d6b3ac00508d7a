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
    """``callback.on_exception`` as Lightning finds it (``original``), calling ``ours.on_exception`` if it raises
    (a class: a trainer copied or pickled meanwhile stays picklable). ``replaced``: what the attribute was
    (another session's wrapper, the callback's own instance attribute), put back by :meth:`restore`."""

    def __init__(self, ours: Any, original: Any, replaced: Any) -> None:
        self.ours, self.original, self.replaced = ours, original, replaced

    def __call__(self, trainer: Any, pl_module: Any, exception: BaseException) -> Any:
        try:
            return self.original(trainer, pl_module, exception)
        except BaseException:
            self.ours.on_exception(trainer, pl_module, exception)
            raise


_MISSING = object()


class EarlierCallbacksGuard:
    """Wraps, then restores, the ``on_exception`` of the callbacks before ours in a trainer's list."""

    def __init__(self) -> None:
        self._wrapped: list[tuple[Any, _Guarded]] = []

    def guard(self, trainer: Any, ours: Any) -> None:
        """Wrap the ``on_exception`` of each callback before ``ours`` in ``trainer.callbacks`` that has its own."""
        self.restore()
        base = next((cls for cls in type(ours).__mro__ if cls.__name__ == "Callback"), None)
        try:
            for callback in list(getattr(trainer, "callbacks", None) or []):
                if callback is ours:
                    break
                replaced = vars(callback).get("on_exception", _MISSING)
                if replaced is _MISSING and base is not None and \
                        getattr(type(callback), "on_exception", None) is getattr(base, "on_exception", None):
                    continue  # Lightning's own no-op: it cannot raise
                # another fit's wrapper (a callback shared with an outer fit): its hook, not the outer guard's
                original = replaced.original if isinstance(replaced, _Guarded) else callback.on_exception
                guarded = _Guarded(ours, original, replaced)
                callback.on_exception = guarded
                self._wrapped.append((callback, guarded))
        except Exception as exc:  # a callback that refuses attributes: left as it is
            logger.debug("mlflow-green: could not guard the callbacks' on_exception: %r", exc)

    def restore(self) -> None:
        """Remove the wrappers (each callback's ``on_exception`` as it was), the last put on first."""
        for callback, guarded in reversed(self._wrapped):
            try:
                if vars(callback).get("on_exception") is not guarded:
                    continue  # replaced since by its owner: left alone
                if guarded.replaced is _MISSING:
                    del callback.on_exception
                else:
                    callback.on_exception = guarded.replaced
            except Exception as exc:
                logger.debug("mlflow-green: could not restore an on_exception: %r", exc)
        self._wrapped = []

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (EarlierCallbacksGuard, ())  # a copy guards nothing until its own next call


__all__ = ["EarlierCallbacksGuard"]
