"""Where a Keras ``fit`` / ``evaluate`` / ``predict`` is running: its frame on the stack, and its callbacks.

Keras does not hand callbacks the call they run in; its frame (found by name, holding an
``epoch_iterator``) does: its callback list and data iterator.

Example:
    >>> caller_frame("fit") is None  # no fit running here
    True
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from mlflow_green.integrations._stack_frames import nearest_frame
from mlflow_green.training.signal_holds import signals_held

logger = logging.getLogger(__name__)


def caller_frame(method: str) -> FrameType | None:
    """The innermost frame of a Keras ``fit`` / ``evaluate`` / ``predict`` running this code."""
    return nearest_frame(lambda frame: frame.f_code.co_name == method and "epoch_iterator" in frame.f_locals)


def busy_elsewhere(*guards: Any) -> bool:
    """True while a call one of ``guards`` watches (the fit, evaluate or predict a callback measures) runs in a
    thread other than this one."""
    for guard in guards:
        watch = getattr(guard, "_fit_watch", None)
        if watch is not None and watch.thread_id != threading.get_ident() and not guard.aborted and guard.fit_running():
            return True
    return False


class CallClaim:
    """Which thread's call one callback measures: claimed at the call's first hook, before anything of the call is
    set up, so that two threads starting a call with the same callback at once cannot both measure it (each saw
    the other's watch not yet installed: both measured, trampling one run — duplicate steps, wrong counts, a JAX
    fit's state deleted).

    Example:
        >>> claim = CallClaim()
        >>> claim.take(busy=lambda: True), claim.take(busy=lambda: True)  # claimed; this thread holds it already
        (True, None)
        >>> claim.release()
    """

    SETUP_S = 5.0
    """A claim not settled within this long is stale (its call failed while being set up, which takes milliseconds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: int | None = None
        self._settled, self._claimed_s = False, 0.0

    def take(self, busy: Callable[[], bool]) -> bool | None:
        """Claim it for this thread. True: claimed now; None: this thread holds it (a call inside its own); False:
        another thread's call holds it — being set up, or ``busy()`` (its watch says it runs) — this one stands aside."""
        me = threading.get_ident()
        with self._lock:
            owner = self._thread
            if owner == me:
                return None
            if owner is not None and _alive(owner):
                setting_up = not self._settled and time.monotonic() - self._claimed_s < self.SETUP_S
                if setting_up or (self._settled and busy()):
                    return False
            self._thread, self._settled, self._claimed_s = me, False, time.monotonic()
            return True

    def held_elsewhere(self) -> bool:
        """True while another thread's call holds it (a hook of this thread's call is not that call's)."""
        owner = self._thread
        return owner is not None and owner != threading.get_ident() and _alive(owner)

    def settle(self) -> None:
        """The call's watch is installed: from now on ``busy()`` tells whether it still runs."""
        self._settled = True

    def release(self) -> None:
        """The call ended (in the thread that claimed it)."""
        with self._lock:
            if self._thread == threading.get_ident():
                self._thread = None

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (CallClaim, ())  # a copy claims nothing


def claims_call(callback: Any, method: str, kind: type) -> bool:
    """``callback``'s call of ``method`` is the one it measures: no other thread's call holds it (its ``_claim``, a
    :class:`CallClaim`), no other ``kind`` (GreenCallback) comes first in it; else it stands aside
    (:func:`stands_aside`: out of the call's list, with a warning)."""
    claim = callback._claim
    claimed = claim.take(lambda: busy_elsewhere(callback._fit_guard, callback._eval_guard))
    if stands_aside(callback, method, kind, elsewhere=claimed is False):
        if claimed:
            claim.release()
        return False
    return True


@contextlib.contextmanager
def evaluation_ending(guard: Any, claim: CallClaim) -> Iterator[None]:
    """An evaluation's end: its watch removed (``guard``, a ``CallGuard``, or None); SIGTERM and Ctrl-C held while
    the block logs its figures (binding its run can take seconds on a fresh store: a ``KeyboardInterrupt`` there left
    the run ``KILLED`` without them), delivered as it ends — inside the evaluation's call; then the claim given back."""
    if guard is not None:
        guard.remove()
    try:
        with signals_held():
            yield
    finally:
        claim.release()


def _alive(thread_id: int) -> bool:
    return any(thread.ident == thread_id for thread in threading.enumerate())


def stands_aside(callback: Any, method: str, kind: type, *, elsewhere: bool = False) -> bool:
    """True when another ``kind`` (a GreenCallback) comes before ``callback`` in the callbacks of the running
    ``fit`` / ``evaluate`` / ``predict``: two would log every figure twice into one run, so ``callback``
    steps out of this call (its place in the call's list taken by a callback that does nothing), with a
    warning. The same callback passed twice is called once. The call's list is Keras's own copy of the
    user's callbacks (a ``CallbackList`` the user passed keeps the change). ``elsewhere``: ``callback``
    measures a call running in another thread — one instance cannot measure two calls at once: it steps out
    of this one."""
    frame = caller_frame(method)
    listed = getattr(frame.f_locals.get("callbacks") if frame is not None else None, "callbacks", None)
    if not isinstance(listed, list):
        return False
    positions = [i for i, cb in enumerate(listed) if cb is callback]
    if not positions:
        return False
    import keras

    for later in positions[1:]:  # the same instance twice: its hooks would run twice
        listed[later] = keras.callbacks.Callback()
    if elsewhere:
        listed[positions[0]] = keras.callbacks.Callback()
        logger.warning("mlflow-green: this GreenCallback is measuring a call in another thread; this %s (thread %s) goes "
                       "unmeasured. Give each thread its own GreenCallback().", method, threading.current_thread().name)
        return True
    if not any(isinstance(cb, kind) for cb in listed[: positions[0]]):
        return False
    listed[positions[0]] = keras.callbacks.Callback()  # the call's remaining hooks skip this one
    logger.warning("mlflow-green: two GreenCallbacks in one %s: the first measures it, the other stands aside (pass one)", method)
    return True


def live_figures_allowed(requested: bool | None, autologging: bool) -> bool:
    """Whether the callback may add its live figures to Keras's ``logs`` in the running ``fit``.

    MLflow's own Keras callback (``mlflow.keras.MlflowCallback``, or the one autologging adds) logs
    every key in ``logs`` at each epoch: the figures would be logged a second time at every step. So
    they are left out when one is in the fit or autologging is on — with a warning when
    ``requested`` (``live_metrics=True``) asked for them; ``requested=False`` leaves them out always.
    """
    if requested is False:
        return False
    frame = caller_frame("fit")
    listed = getattr(frame.f_locals.get("callbacks") if frame is not None else None, "callbacks", None)
    beside = any(_mlflows(cb) for cb in listed) if isinstance(listed, list) else False
    if not (beside or autologging):
        return True
    if requested:
        logger.warning("mlflow-green: live_metrics=True, but MLflow's own callback logs Keras's logs in this fit: the "
                       "live figures are not added to them (each would be logged twice at every step)")
    return False


def _mlflows(callback: Any) -> bool:
    """MLflow's own callback, or a subclass of it (a user's ``class MyCallback(mlflow.keras.MlflowCallback)``)."""
    return any(getattr(klass, "__module__", "").startswith("mlflow.") for klass in type(callback).__mro__)


def fit_epochs(params: dict[str, Any] | None) -> int:
    """The epochs the running ``fit`` was asked for: from the callback's ``params``, else (a ``CallbackList`` the
    user made without them, which Keras passes on as it is) from ``fit``'s own arguments; 0 if unknown."""
    epochs = (params or {}).get("epochs")
    if epochs is None:
        frame = caller_frame("fit")
        epochs = frame.f_locals.get("epochs") if frame is not None else None
    try:
        return int(epochs or 0)
    except (TypeError, ValueError):
        return 0


__all__ = ["caller_frame", "fit_epochs", "live_figures_allowed", "stands_aside"]
