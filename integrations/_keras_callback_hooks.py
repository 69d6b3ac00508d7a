"""The hooks of a watched Keras call's ``CallbackList`` and of the single callbacks in it (a mixin of
:class:`~mlflow_green.integrations._keras_guard.CallGuard`).

The list's hooks but the batch ones see an exception in any callback (:meth:`CallbackHooks._guarded_hook`). Of
single callbacks, two kinds, each restored with everything else the guard wrapped:

- the start hook of the callbacks after ours (``on_train_begin`` …), for that one call: Keras calls them
  after ours returns, in the dispatch the list's wrapped hooks came too late for;
- the batch hooks a callback has of its own (a ``ModelCheckpoint`` saving every few batches, a progress
  bar, a ``LambdaCallback``): an exception there ends the call at once. The list's own batch hooks are
  not wrapped (only ``on_train_batch_end`` where a budget may stop training at a batch's end), and a
  callback whose batch hooks all do nothing (``History``, ours) gets no wrapper: with the callbacks
  Keras adds by itself, nothing of ours runs between two steps but the step function's wrapper.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from mlflow_green.integrations._keras_batch_list import BATCH_HOOKS, does_nothing_per_batch
from mlflow_green.measure.signal_safety import passes_through
from mlflow_green.training.session_eval import active_run_id

logger = logging.getLogger(__name__)


class CallbackHooks:
    """Wraps hooks of the call's list and of single callbacks (needs the guard's ``_callbacks``, ``_set``, ``_mark``,
    ``_ours``, ``_restore``, ``abort`` and its counts)."""

    _callbacks: Any  # the call's CallbackList
    in_list_train_end = False
    """True while the fit's list runs its ``on_train_end``: ours defers the fit's end to :attr:`after_list_train_end`."""
    train_end_logs: Any = None
    """The ``logs`` the list's ``on_train_end`` was given (the fit's last figures)."""
    after_list_train_end: Callable[[], None] | None = None
    """Called once every callback's ``on_train_end`` has returned: the fit's end, after the callbacks listed after ours
    (their work there is measured, and one raising ends the run ``FAILED``)."""

    def training_over(self) -> bool:
        """True while the fit's list runs its ``on_train_end`` (every epoch done): a call begun there — an ``evaluate``,
        a ``fit`` given the fit's callback, from a callback listed before or after ours — finds the fit over, and the
        caller ends it now (its end after the list is dropped)."""
        if not self.in_list_train_end:
            return False
        self.after_list_train_end = None
        return True

    def watch_later_starts(self, ours: Any, hook: str = "on_train_begin") -> None:
        """Watch, for this one call each, the start ``hook`` of the callbacks after ``ours`` in the call's list:
        Keras calls them after ours returns, in the dispatch the list's wrapped hooks came too late for (a
        ``CSVLogger`` that cannot open its file): an exception there ends the call at once, not a watch's look later."""
        listed = list(getattr(self._callbacks, "callbacks", None) or [])
        for callback in listed[next((i for i, c in enumerate(listed) if c is ours), len(listed)) + 1:]:
            original = getattr(callback, hook, None)
            if original is not None and not self._ours(original):
                self._set(callback, hook, self._mark(passes_through(self._started_once(callback, hook, original)), original))

    def _started_once(self, owner: Any, hook: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def started(*args: Any, **kwargs: Any) -> Any:
            self._restore(owner, hook)  # its own again from now on (a later call, a probe's)
            try:
                return original(*args, **kwargs)
            except BaseException as exc:
                self.abort(exc)
                raise

        return started

    def watch_batch_hooks(self, callbacks: Any) -> None:
        """Wrap, on each callback of the call's list, the batch hooks it has of its own (an exception there ends the
        call); the list's batch hooks are left as they are, and a callback that does nothing per batch (``History``,
        ours) costs no wrapper: the hot path stays Keras's own."""
        thread = threading.get_ident()
        for callback in list(getattr(callbacks, "callbacks", None) or []):
            if does_nothing_per_batch(callback):
                continue
            for hook in BATCH_HOOKS:
                original = getattr(callback, hook, None)
                if callable(original) and not getattr(original, "_is_default", False) and not self._ours(original):
                    self._set(callback, hook, self._mark(passes_through(self._raising_seen(original, thread)), original))

    def _raising_seen(self, original: Callable[..., Any], thread: int) -> Callable[..., Any]:
        def seen(*args: Any, **kwargs: Any) -> Any:
            try:
                return original(*args, **kwargs)
            except BaseException as exc:
                if threading.get_ident() == thread:  # not the same callback in another thread's call
                    self.abort(exc)
                raise

        return seen

    def _guarded_hook(self, hook: str, original: Callable[..., Any]) -> Callable[..., Any]:
        guard = self
        apply_stop, epoch_end, train_end = hook == "on_train_batch_end", hook == "on_epoch_end", hook == "on_train_end"
        if hook in ("on_test_begin", "on_predict_begin", "on_test_end"):  # called through the watched call's own hooks
            return self._mark(passes_through(self._noted_hook(original, validating=hook == "on_test_begin")), original)
        if "_batch_" in hook:  # the hot path: once per step

            def guarded(*args: Any, **kwargs: Any) -> Any:
                try:
                    result = original(*args, **kwargs)
                except BaseException as exc:
                    guard.abort(exc)
                    raise
                if apply_stop and guard.stop_requested:
                    guard.model.stop_training = True
                return result

            return self._mark(passes_through(guarded), original)

        def guarded_whole(*args: Any, **kwargs: Any) -> Any:  # with every callback of the list (see BatchList)
            batches = guard._batch_list
            if batches is not None:
                batches.whole()
            try:
                if epoch_end and guard.evaluations is not None:
                    guard.evaluations.training_over()
                if epoch_end and guard.on_epoch_end_start is not None:
                    guard.on_epoch_end_start()
                return original(*args, **kwargs)
            except BaseException as exc:
                guard.abort(exc)
                raise
            finally:
                if guard._batch_list is not None:
                    guard._batch_list.slim()

        if not train_end:
            return self._mark(passes_through(guarded_whole), original)

        def guarded_train_end(*args: Any, **kwargs: Any) -> Any:
            before = active_run_id()
            guard.in_list_train_end, guard.train_end_logs = True, kwargs.get("logs", args[0] if args else None)
            try:
                result = guarded_whole(*args, **kwargs)
            finally:
                guard.in_list_train_end = False
            if guard.after_list_train_end is not None:  # every callback's on_train_end done: the fit ends
                after, guard.after_list_train_end = guard.after_list_train_end, None
                after()
            _warn_if_started_meanwhile(before)
            return result

        passes_through(guarded_whole)
        return self._mark(passes_through(guarded_train_end), original)

    def _noted_hook(self, original: Callable[..., Any], *, validating: bool) -> Callable[..., Any]:
        """A call's start (end) hook that notes, while it runs, that the watched call itself calls it (fit's
        validation), and whether its own validation runs from there on."""
        guard = self

        def noted(*args: Any, **kwargs: Any) -> Any:
            guard.in_own_hook, guard.validating = True, validating
            if validating:
                guard.test_steps = guard.test_samples = 0
            if guard._batch_list is not None:
                guard._batch_list.whole()
            try:
                return original(*args, **kwargs)
            except BaseException as exc:
                guard.abort(exc)
                raise
            finally:
                guard.in_own_hook = False
                if guard._batch_list is not None:
                    guard._batch_list.slim()

        return noted


def _warn_if_started_meanwhile(before: str | None) -> None:
    """A run became MLflow's active run during the callbacks' ``on_train_end`` and is still active: a ``mlflow.log_*``
    call there, with the fit's run no longer active, had MLflow start it (or a ``mlflow.start_run()`` not ended)."""
    started = active_run_id()
    if started is not None and started != before:
        logger.warning(
            "mlflow-green: MLflow run %s was started in a callback's on_train_end (a mlflow.log_* call there, after "
            "GreenCallback's on_train_end, finds no run active) and is still active: the next fit logs into it as into "
            "yours. Log in on_epoch_end, or into the fit's run by id (MlflowClient().log_metric(run_id, ...)), or end "
            "it with mlflow.end_run().", started)


__all__ = ["CallbackHooks"]
