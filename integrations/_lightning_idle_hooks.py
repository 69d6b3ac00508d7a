"""The Lightning hooks in which the callback has nothing to do: not callable on it, so Lightning skips them.

Lightning's ``_call_callback_hooks`` calls a callback's hook inside its profiler's ``profile`` context — an
f-string of the callback's ``state_key`` and a context manager, even with the default ``PassThroughProfiler`` —
unless the hook is not callable. It calls four hooks at every training batch (``on_before_backward``,
``on_after_backward``, ``on_before_optimizer_step``, ``on_before_zero_grad``) and one at every validation, test
and predict batch (``*_batch_start``) that are ``Callback``'s own no-ops on GreenCallback: each callback sets
them, and the few per-epoch and per-fit no-ops of :data:`IDLE_HOOKS`, to ``None`` on itself, so that a batch
runs nothing of ours there. A subclass that defines one of them keeps it (it is called as before, and may call
``super()``'s no-op), so does a class combining GreenCallback with another callback that defines it, and a hook set
on the instance before. Calling one of them directly on a GreenCallback (``callback.on_fit_end(...)``) raises a
``TypeError``: Lightning never does (code forwarding hooks to other callbacks should skip those not callable, as
Lightning does).

Example:
    >>> class Callback:
    ...     def on_after_backward(self, trainer, pl_module): pass
    ...     def on_before_zero_grad(self, trainer, pl_module, optimizer): pass
    >>> class Logging(Callback):
    ...     def on_before_zero_grad(self, trainer, pl_module, optimizer): print("zero grad")
    >>> callback = Logging()
    >>> leave_idle_hooks(callback, Callback)
    >>> callback.on_after_backward is None, callable(callback.on_before_zero_grad)
    (True, True)
"""

from __future__ import annotations

from typing import Any

IDLE_HOOKS = (
    "on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad",  # every batch
    "on_validation_batch_start", "on_test_batch_start", "on_predict_batch_start",
    "on_validation_epoch_start", "on_validation_epoch_end", "on_test_epoch_start", "on_test_epoch_end",
    "on_predict_epoch_start", "on_predict_epoch_end", "on_sanity_check_start", "on_sanity_check_end",
    "on_train_end", "on_fit_end",
)
"""Hooks Lightning calls only through ``_call_callback_hooks`` (which skips one that is not callable), and which
GreenCallback leaves to ``Callback``."""


def leave_idle_hooks(callback: Any, base: type | None) -> None:
    """Set each of :data:`IDLE_HOOKS` that ``callback``'s class takes from ``base`` (Lightning's ``Callback``,
    a no-op) to ``None`` on the instance: Lightning then skips it."""
    if base is None:
        return
    owner, own = type(callback), callback.__dict__
    for name in IDLE_HOOKS:
        inherited = getattr(base, name, None)
        if inherited is not None and name not in own and getattr(owner, name, None) is inherited:
            own[name] = None


__all__ = ["IDLE_HOOKS", "leave_idle_hooks"]
