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


class _StrategyHook:
    """``trainer.strategy.on_exception`` as Lightning finds it, then our ``on_exception`` if Lightning's call of the
    callbacks' did not reach ours: a tuner's trial (``LearningRateFinder``) replaces ``trainer.callbacks`` with its own
    and leaves them so when the trial raises — the fit then failed with no hook of ours called, measuring on."""

    def __init__(self, ours: Any, original: Any) -> None:
        self.ours, self.original = ours, original

    def __call__(self, exception: BaseException) -> Any:
        try:
            return self.original(exception)
        finally:
            ours = self.ours
            if getattr(ours, "_exception_seen", None) != id(exception):
                trainer, pl_module = getattr(ours, "_term_call", None) or (None, None)
                ours.on_exception(trainer, pl_module, exception)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_unwrapped, (self.original,))  # a strategy pickled meanwhile (ddp_spawn) gets its own hook


def _unwrapped(original: Any) -> Any:
    return original


class StrategyGuard:
    """Wraps, for the length of a fit, ``trainer.strategy.on_exception`` (which Lightning calls however the fit
    fails, after the callbacks' ``on_exception``) so that ours runs even when the callbacks' call did not reach it.

    Example:
        >>> guard = StrategyGuard()
        >>> guard.guard(object(), ours=object())  # no strategy: nothing wrapped
        >>> guard.restore()
    """

    def __init__(self) -> None:
        self._wrapped: tuple[Any, _StrategyHook] | None = None

    def guard(self, trainer: Any, ours: Any) -> None:
        """Wrap ``trainer.strategy.on_exception`` (an instance attribute, removed by :meth:`restore`)."""
        self.restore()
        strategy = getattr(trainer, "strategy", None)
        original = getattr(strategy, "on_exception", None)
        if strategy is None or not callable(original) or "on_exception" in vars(strategy):
            return  # none, or someone's own there: left alone
        try:
            hook = _StrategyHook(ours, original)
            strategy.on_exception = hook
            self._wrapped = (strategy, hook)
        except Exception as exc:
            logger.debug("mlflow-green: could not guard the strategy's on_exception: %r", exc)

    def restore(self) -> None:
        """The strategy's own ``on_exception`` back (unless replaced since)."""
        wrapped, self._wrapped = self._wrapped, None
        if wrapped is not None and vars(wrapped[0]).get("on_exception") is wrapped[1]:
            del wrapped[0].on_exception

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (StrategyGuard, ())


__all__ = ["EarlierCallbacksGuard", "StrategyGuard"]
