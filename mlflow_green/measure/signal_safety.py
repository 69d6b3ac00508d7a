"""Signals that arrive in the middle of mlflow-green's own code: never taken for a meter's failure,
never handled while it holds a lock.

Python runs a signal handler on the main thread between two bytecodes of whatever runs there,
and what the handler raises comes out of that code. A SIGTERM arriving while a boundary reads its
meters (or waits for the GPU to finish, ``torch.cuda.synchronize``) raises, through a handler that
raises (Lightning's, a scheduler's), out of the meter read — where a meter's own failure is caught,
logged and failed over. Taken for a meter failure, the termination would be swallowed and the
training would go on. :func:`raised_by_signal_handler` tells them apart by the traceback: it holds
the frame of a Python signal handler.

A handler of ours that ends the measurement (:class:`~mlflow_green.training.termination.SigtermWatch`)
must not run inside our own code either: the code it interrupted may hold a lock that ending the
measurement takes again (the meters' lock mid-read: the process would hang instead of terminating).
:func:`inside_own_code` tells from the interrupted frame; the handler then has the signal delivered
again a moment later. Our wrappers around the framework's own work (a Keras step, a patched
``Trainer.fit``) hold no lock while they wait for it: :func:`passes_through` marks them.

Example:
    >>> import signal
    >>> def on_term(signum, frame):
    ...     raise RuntimeError("terminated")
    >>> previous = signal.signal(signal.SIGTERM, on_term)
    >>> try:
    ...     signal.raise_signal(signal.SIGTERM)  # arrives in the middle of a read
    ... except RuntimeError as exc:
    ...     print(raised_by_signal_handler(exc), raised_by_signal_handler(RuntimeError("a meter's")))
    True False
    >>> _ = signal.signal(signal.SIGTERM, previous)
"""

from __future__ import annotations

import functools
import importlib.util
import os
import signal
from types import CodeType, FrameType
from typing import Any, TypeVar

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGALRM")
                 if hasattr(signal, name))
_NOTED: set[CodeType] = set()
_PASSING: set[CodeType] = set()
_OWN_DIRS: tuple[str, ...] | None = None
_Fn = TypeVar("_Fn")


def note_handler(handler: Any) -> None:
    """Count ``handler`` as a signal handler even when it is no longer installed (one that installs another
    before it calls on, as :class:`~mlflow_green.training.termination.SigtermWatch` does)."""
    code = _code_of(handler)
    if code is not None:
        _NOTED.add(code)


def own_handler(handler: Any) -> bool:
    """True when ``handler`` is mlflow-green's own (a watch's, a hold's), not the user's or a framework's."""
    code = _code_of(handler)
    return code is not None and code.co_filename.startswith(_own_dirs())


def raised_by_signal_handler(exc: BaseException) -> bool:
    """True when ``exc`` came out of a Python signal handler (see the module docstring). Only called when
    something failed: it reads the handlers in force and walks the traceback."""
    codes = set(_NOTED)
    for signum in _SIGNALS:
        try:
            code = _code_of(signal.getsignal(signum))
        except (ValueError, OSError):
            continue
        if code is not None:
            codes.add(code)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return True
        tb = tb.tb_next
    return False


def passes_through(wrapper: _Fn) -> _Fn:
    """Mark ``wrapper`` (a function or its code's every closure) as one that only calls on into the user's or
    the framework's code, holding no lock meanwhile: a signal there is not inside our code. Returns it."""
    code = _code_of(wrapper)
    if code is not None:
        _PASSING.add(code)
    return wrapper


def inside_own_code(frame: FrameType | None, depth: int = 500) -> bool:
    """True when ``frame`` (the one a signal interrupted) or a caller of it is mlflow-green's own code,
    other than a wrapper that :func:`passes_through`."""
    own = _own_dirs()
    while frame is not None and depth > 0:
        code = frame.f_code
        if code not in _PASSING and code.co_filename.startswith(own):
            return True
        frame, depth = frame.f_back, depth - 1
    return False


def _own_dirs() -> tuple[str, ...]:
    global _OWN_DIRS
    if _OWN_DIRS is None:
        dirs = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep]  # mlflow_green/
        try:
            spec = importlib.util.find_spec("mlflow_green.integrations")
            dirs += [os.path.abspath(p) + os.sep for p in (spec.submodule_search_locations or [])] if spec else []
        except (ImportError, ValueError):
            pass
        _OWN_DIRS = tuple(dirs)
    return _OWN_DIRS


def _code_of(handler: Any) -> CodeType | None:
    """The code a Python handler runs (a function, a bound method, a partial, a callable object)."""
    for _ in range(8):  # unwrap partials and bound methods
        if isinstance(handler, functools.partial):
            handler = handler.func
        elif hasattr(handler, "__func__"):
            handler = handler.__func__
        else:
            break
    code = getattr(handler, "__code__", None)
    if code is None and callable(handler) and not isinstance(handler, type):
        code = getattr(getattr(type(handler), "__call__", None), "__code__", None)
    return code if isinstance(code, CodeType) else None


__all__ = ["inside_own_code", "note_handler", "passes_through", "raised_by_signal_handler"]
