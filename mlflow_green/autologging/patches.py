"""Replacing a class's method with a wrapper, and putting it back.

Wrappers are plain functions that keep the original in a closure; they are marked so that
:func:`unpatch_all` restores only methods that are still ours (another library, e.g. MLflow's
own autologging, may have wrapped ours since: then ours stays inside theirs and becomes a
pass-through, because every wrapper checks :func:`is_enabled` on each call).

Example::

    patch(SomeTrainer, "__init__", lambda original: wrapped_init(original))
    unpatch_all()
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MARK = "__mlflow_green_autolog__"

_NOT_OWN = object()


@dataclass
class _Patch:
    owner: type
    name: str
    own_attribute: Any  # what owner.__dict__ held before (the function, or _NOT_OWN if inherited)
    wrapper: Callable[..., Any]


_patches: list[_Patch] = []
_lock = threading.RLock()


def patch(owner: type, name: str, make_wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace ``owner.name`` by ``make_wrapper(current)``, unless our wrapper is already there."""
    with _lock:
        current = owner.__dict__.get(name, _NOT_OWN)
        if getattr(current, MARK, False) or any(p.owner is owner and p.name == name for p in _patches):
            return
        original = getattr(owner, name)
        wrapper = functools.wraps(original)(make_wrapper(original))
        setattr(wrapper, MARK, True)
        setattr(owner, name, wrapper)
        _patches.append(_Patch(owner, name, current, wrapper))


def unpatch_all() -> None:
    """Put back every method we replaced that is still our wrapper.

    A wrapper that another library wrapped since stays (restoring under it would undo theirs);
    it passes calls through while autologging is off, and is used again when it is back on.
    """
    with _lock:
        for p in list(reversed(_patches)):
            if p.owner.__dict__.get(p.name) is not p.wrapper:
                continue
            if p.own_attribute is _NOT_OWN:
                delattr(p.owner, p.name)
            else:
                setattr(p.owner, p.name, p.own_attribute)
            _patches.remove(p)


def patched() -> list[str]:
    """``module.Class.method`` of each method patched now (for ``autolog`` status and tests)."""
    with _lock:
        return [f"{p.owner.__module__}.{p.owner.__qualname__}.{p.name}" for p in _patches]
