"""Runs kept as MLflow's active run until a block ends, though they ended inside it.

A Keras fit ends once every callback's ``on_train_end`` has returned; one of them may end the fit's run sooner (an
``evaluate`` given the callback there ends the fit first, then is measured into its run). Code after that, still
inside those hooks (``mlflow.log_metric(...)``), would find no active run and have MLflow start one — left active
after the fit, and taken by the next fit for the user's. Inside :func:`kept_active`, a run that ends stays MLflow's
active run until the block's end, where it is popped.

Example:
    >>> popped = []
    >>> with kept_active():
    ...     deferred(lambda: popped.append("run"))
    ...     popped
    True
    []
    >>> popped
    ['run']
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

logger = logging.getLogger(__name__)

_HOLDS = threading.local()  # per thread: the deactivations deferred to the innermost block's end


@contextlib.contextmanager
def kept_active() -> Iterator[None]:
    """Runs ending inside the block on this thread stay MLflow's active run until it ends."""
    outer, held = getattr(_HOLDS, "held", None), []
    _HOLDS.held = held
    try:
        yield
    finally:
        _HOLDS.held = outer
        for deactivate in reversed(held):  # the last activated first, as a stack pops
            try:
                deactivate()
            except Exception as exc:  # never in the way of the block's own outcome
                logger.debug("mlflow-green: could not pop a run from the active runs: %r", exc)


def deferred(deactivate: Callable[[], None]) -> bool:
    """Keep ``deactivate`` for the end of the innermost :func:`kept_active` block on this thread; False if none."""
    held = getattr(_HOLDS, "held", None)
    if held is None:
        return False
    held.append(deactivate)
    return True


__all__ = ["deferred", "kept_active"]
