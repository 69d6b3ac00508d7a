"""A Ctrl-C that Python lost, raised again at the fit's next hook.

A SIGINT's ``KeyboardInterrupt`` is raised wherever the main thread is when Python runs the handler —
now and then inside a garbage collection's callback (a weakref's, SQLAlchemy's), where Python prints
"Exception ignored" (through ``sys.unraisablehook``) and goes on: the training would go on after Ctrl-C ended its
measurement ``KILLED``. Seen dropped there, it is raised by the fit's own ``CallbackList`` (one per ``fit`` call) at
its next batch or epoch hook — after the last epoch's, at its ``on_train_end`` (as Keras would have, no callback's
``on_train_end`` runs). One that a callback catches (a graceful stop setting ``stop_training``) is left caught.
"""

from __future__ import annotations

import sys
from typing import Any

RAISE_AT = ("on_train_batch_begin", "on_test_batch_begin", "on_predict_batch_begin", "on_epoch_begin", "on_epoch_end",
            "on_test_begin", "on_predict_begin", "on_train_end")
"""The hooks of the fit's ``CallbackList`` that raise a lost Ctrl-C (once)."""


def raise_again_at_next_hook(callbacks: Any) -> None:
    """Make the next call of one of :data:`RAISE_AT` on ``callbacks`` (the fit's ``CallbackList``) raise
    ``KeyboardInterrupt`` — once: the hooks are the list's own again after it."""

    def raise_interrupt(*args: Any, **kwargs: Any) -> None:
        for name in RAISE_AT:
            callbacks.__dict__.pop(name, None)
        raise KeyboardInterrupt("Ctrl-C (raised again: Python had ignored it inside a garbage collection's callback)")

    for name in RAISE_AT:
        if getattr(callbacks, name, None) is not None:
            setattr(callbacks, name, raise_interrupt)


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


__all__ = ["RAISE_AT", "ctrl_c_from", "raise_again_at_next_hook", "raise_again_if_lost"]
