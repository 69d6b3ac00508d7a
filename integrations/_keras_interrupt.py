"""A Ctrl-C that Python lost, or that code on the way caught and dropped, raised again at the fit's next hook.

A SIGINT's ``KeyboardInterrupt`` is raised wherever the main thread is — now and then inside a garbage collection's
callback (a weakref's, SQLAlchemy's), where Python prints "Exception ignored" (through ``sys.unraisablehook``) and goes
on; or inside a bare ``except:`` (Keras's own, around the structure checks of the loss it runs as it traces a step —
on TensorFlow, the validation's first step): the training would go on after Ctrl-C ended its measurement ``KILLED``.
Then it is raised by the fit's own ``CallbackList`` (one per ``fit`` call) at its next batch or epoch hook in that
call — after the last epoch's, at its ``on_train_end`` (as Keras would have, no callback's ``on_train_end`` runs). One
that a callback catches for a graceful stop (setting ``stop_training``) is left caught.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

RAISE_AT = ("on_train_batch_begin", "on_test_batch_begin", "on_predict_batch_begin", "on_epoch_begin", "on_epoch_end",
            "on_test_begin", "on_predict_begin", "on_train_end")
"""The hooks of the fit's ``CallbackList`` that raise a lost Ctrl-C (once)."""


_ON_CLASS = object()  # no instance attribute: the list's own method


def _arm(callbacks: Any, hook_for: Callable[[Callable[..., Any], Callable[[], None]], Callable[..., Any]]) -> None:
    """Put ``hook_for(original, restore)`` in place of each of :data:`RAISE_AT` on ``callbacks`` (``original``: the hook
    it replaces, which it calls to pass through). ``restore()`` puts back what was there, on each name where the armed
    hook is still the one in place — a wrapper set over it since (the next fit's guard, on a ``CallbackList`` of the
    user's) is left alone, and keeps calling through it to ``original``."""
    armed: dict[str, Callable[..., Any]] = {}
    before: dict[str, Any] = {}

    def restore() -> None:
        for name, hook in armed.items():
            if callbacks.__dict__.get(name) is hook:
                if before[name] is _ON_CLASS:
                    del callbacks.__dict__[name]
                else:
                    setattr(callbacks, name, before[name])

    for name in RAISE_AT:
        original = getattr(callbacks, name, None)
        if original is not None:
            before[name] = callbacks.__dict__.get(name, _ON_CLASS)
            armed[name] = hook_for(original, restore)
            setattr(callbacks, name, armed[name])


def raise_again_at_next_hook(callbacks: Any) -> None:
    """Make the next call of one of :data:`RAISE_AT` on ``callbacks`` (the fit's ``CallbackList``) raise
    ``KeyboardInterrupt`` — once: the hooks are the list's own again after it."""

    def hook_for(original: Callable[..., Any], restore: Callable[[], None]) -> Callable[..., Any]:
        def raise_interrupt(*args: Any, **kwargs: Any) -> None:
            restore()
            raise KeyboardInterrupt("Ctrl-C (raised again: Python had ignored it inside a garbage collection's callback)")
        return raise_interrupt

    _arm(callbacks, hook_for)


def raise_again_if_swallowed(callbacks: Any, model: Any, call_frame: FrameType | None) -> None:
    """Called as a Ctrl-C is raised in the call running in ``call_frame`` (a fit's): if one of :data:`RAISE_AT` on
    ``callbacks`` is called again inside that call, the ``KeyboardInterrupt`` was caught on the way and dropped (a bare
    ``except:``) — it is raised there, unless ``model.stop_training`` says a callback caught it to stop gracefully.
    Called outside that call (a ``CallbackList`` of the user's passed to the next fit), the hooks pass through."""
    if call_frame is None:
        return

    def hook_for(original: Callable[..., Any], restore: Callable[[], None]) -> Callable[..., Any]:
        def raise_if_swallowed(*args: Any, **kwargs: Any) -> Any:
            restore()
            if _inside(call_frame) and not getattr(model, "stop_training", False):
                raise KeyboardInterrupt("Ctrl-C (raised again: code inside the fit had caught it, and the fit went on)")
            return original(*args, **kwargs)
        return raise_if_swallowed

    _arm(callbacks, hook_for)


def _inside(call_frame: FrameType, depth: int = 64) -> bool:
    """True when the caller's caller runs inside ``call_frame`` (within ``depth`` frames)."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(depth):
        if frame is None:
            return False
        if frame is call_frame:
            return True
        frame = frame.f_back
    return False


def raise_again_if_lost(callbacks: Any) -> None:
    """From now on, until it happens once: a ``KeyboardInterrupt`` that Python drops as unraisable makes the next call
    of one of :data:`RAISE_AT` on ``callbacks`` raise it (called as a Ctrl-C is handled, just before it is raised)."""
    previous = sys.unraisablehook
    if getattr(previous, "_green_lost_interrupt", False):  # an earlier Ctrl-C's, never dropped: this one's instead
        previous = previous._green_previous  # type: ignore[attr-defined]

    def dropped(unraisable: Any) -> None:
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            if sys.unraisablehook is dropped:
                sys.unraisablehook = previous
            raise_again_at_next_hook(callbacks)
        previous(unraisable)

    dropped._green_lost_interrupt, dropped._green_previous = True, previous  # type: ignore[attr-defined]
    sys.unraisablehook = dropped


def ctrl_c_from(exc: BaseException) -> KeyboardInterrupt:
    """The ``KeyboardInterrupt`` for a Ctrl-C the framework raised as ``exc`` (TensorFlow's C code, given it inside a
    Python callback of its own, raises ``SystemError: bad argument to internal function`` or ``UnknownError``)."""
    return KeyboardInterrupt(f"Ctrl-C (the framework raised it as {type(exc).__name__}: {exc})")


__all__ = ["RAISE_AT", "ctrl_c_from", "raise_again_at_next_hook", "raise_again_if_lost", "raise_again_if_swallowed"]
