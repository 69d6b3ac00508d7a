"""Sees every way a Keras ``fit`` / ``evaluate`` / ``predict`` can end, and times input waits.

Keras has no "on exception" hook: an exception raised by another callback, by the input pipeline or by a compiled step
leaves ``fit`` without calling ``on_train_end``. While a call is measured, :class:`CallGuard` wraps, on the instances
of that one call only:
- the call's ``CallbackList`` hooks but the batch ones, and each callback's own batch hooks (an exception or
  ``KeyboardInterrupt`` in any callback: ``_keras_callback_hooks``; a fit's batch hooks skip ours: ``_keras_batch_list``);
- the model's compiled step function (``train_function`` / ``test_function`` / ``predict_function``), and a fit's
  model's ``evaluate``, ``test_on_batch`` and ``train_on_batch`` (a callback's, inside an epoch: ``_keras_evaluations``);
- on the torch and JAX backends, the epoch iterator's data iterator: each ``next()`` is timed (input wait) and counted
  (batches; their samples follow from the batching over arrays, else each batch's are counted), and its exceptions are
  seen (JAX reads each batch inside the step function: the step's wrapper sees them, a validation input of known size
  is left as it is);
- ``SIGTERM`` and ``SIGINT`` (Ctrl-C; main thread only): the measurement ends ``KILLED`` at that moment, then the
  previous handler runs (the process terminates, ``KeyboardInterrupt`` is raised, as they would have); a step that
  raised something else for the Ctrl-C (TensorFlow's C code, given the interrupt inside a Python callback of its own:
  ``SystemError``, ``UnknownError``) raises ``KeyboardInterrupt`` from it.

On any of these the guard calls ``on_abort(exception)`` once, at that moment, then lets the exception go on;
:meth:`CallGuard.remove` restores everything. Input wait: torch and JAX read each batch in Python (``next()`` on the
data iterator): timed. TensorFlow reads its input inside the compiled step (``tf.data``, prefetched): 0, in train.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from mlflow_green.integrations._fit_watch import FitWatch
from mlflow_green.integrations._keras_batch_list import (
    BATCH_HOOKS,
    BatchList,
    does_nothing_per_batch,
    raising_async_batch_ends,
)
from mlflow_green.integrations._keras_callback_hooks import CallbackHooks
from mlflow_green.integrations._keras_evaluations import EpochEvaluations, steps_kept
from mlflow_green.integrations._keras_frames import caller_frame
from mlflow_green.integrations._keras_input import end_of_data, leading_dim, reads_input_in_step, watched_source
from mlflow_green.integrations._keras_interrupt import ctrl_c_from, raise_again_if_lost, raise_again_if_swallowed
from mlflow_green.integrations._keras_raised import see_exit
from mlflow_green.integrations._keras_samples import PassBatching, pass_batching, samples_seen
from mlflow_green.measure.signal_safety import passes_through
from mlflow_green.training.interrupts import SigintWatch
from mlflow_green.training.termination import SigtermWatch

logger = logging.getLogger(__name__)

_CALLBACK_HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_batch_begin", "on_train_batch_end", "on_test_begin",
                   "on_test_end", "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
                   "on_predict_batch_begin", "on_predict_batch_end", "on_train_end")
_STEP_FUNCTIONS = {"fit": "train_function", "evaluate": "test_function", "predict": "predict_function"}
_START_HOOKS = {"fit": "on_train_begin", "evaluate": "on_test_begin", "predict": "on_predict_begin"}


class CallGuard(CallbackHooks):
    """Guards the ``fit`` / ``evaluate`` / ``predict`` calls of ``model`` that one measurement covers.

    Args:
        model: The Keras model.
        on_abort: Called once with the exception that ends the call (before it propagates).
        python_input: The backend reads batches in Python (torch, JAX): watch, time and count them.

    Attributes:
        epoch_iterator: The first watched call's Keras epoch iterator, or None if not found.
        data_wait_s: Seconds spent reading training batches since :meth:`reset_counts`.
        batches: Training batches read since :meth:`reset_counts`.
        batching: The training input's batching where it is arrays (``PassBatching``): samples follow from ``batches``.
        stop_requested: Set to stop training at the current batch's end (never inside the step: on JAX that deletes state).
        evaluations: A fit's ``evaluate`` calls inside its epochs (``_keras_evaluations``; its model's ``evaluate`` wrapped).
        on_step_end: Called after each training step of ``fit`` (hot path).
        on_epoch_end_start: Called as the call's callback list begins its ``on_epoch_end`` (before any callback's).
    """

    def __init__(self, model: Any, on_abort: Callable[[BaseException], None], *, python_input: bool,
                 on_step_end: Callable[[], None] | None = None) -> None:
        self.model, self.on_abort = model, on_abort
        self.counts_batches = False  # the training input is read through our iterator: counts are exact (0 is one)
        self.epoch_iterator: Any = None
        self._python_input = python_input
        self._wrapped: list[tuple[Any, str]] = []
        self._callbacks: Any = None  # the watched call's CallbackList
        self.validates = self.outside_fit = False  # validation data in the watched fit; a CallbackList of the user's own loop
        self._aborted = self.interrupted = False  # interrupted: a Ctrl-C was handled during the call
        self._sigterm = SigtermWatch(lambda: self.abort(SystemExit(128 + signal.SIGTERM)))  # ends KILLED, now
        self._sigint = SigintWatch(self._ctrl_c)  # Ctrl-C wherever it lands: KILLED, now
        self.data_wait_s, self.batches, self.read_samples, self.read_trained_samples = 0.0, 0, 0, 0
        self.trained_batches = 0  # ``batches`` as the fit's last training step finished (not a callback's train_on_batch)
        self.batching: PassBatching | None = None
        self._reads_in_step = python_input and reads_input_in_step()  # JAX: next() inside the step function
        self.evaluations: EpochEvaluations | None = None
        self.steps = 0  # training steps finished in this fit (never reset: the fit's watch reads it)
        self.test_steps = self.test_samples = self.predicted = 0  # this validation's (call's) steps, samples read, predicted
        self.epoch_first_step, self.step_failed = 0, False  # ``steps`` as the epoch began; a training step raised in it
        self.stop_requested, self.on_step_end = False, on_step_end
        self.on_epoch_end_start: Callable[[], None] | None = None
        self._fit_watch: FitWatch | None = None
        self._call_frame: Any = None  # the fit's frame, while it is watched
        self._batch_list: BatchList | None = None  # the fit's batch hooks skip ours
        self.in_own_hook = self.validating = False  # in the call's own start hook; between its on_test_begin and _end

    # -- install / remove ----------------------------------------------------------------------
    def watch(self, method: str, *, timed: bool = True, ours: Any = None) -> CallGuard:
        """Watch the running ``method`` call: its callbacks, step function and input; take SIGTERM.

        ``timed``: its batches count as input wait and samples (the training input), else its input is only watched
        for errors (validation inside a fit). ``ours``: the callback whose ``on_train_begin`` calls this (see
        :meth:`watch_later_starts`)."""
        frame = caller_frame(method)
        local = frame.f_locals if frame is not None else {}
        callbacks, iterator = local.get("callbacks"), local.get("epoch_iterator")
        self.validates = self.validates or (method == "fit" and local.get("validation_data") is not None)
        self.outside_fit = method == "fit" and frame is None  # a CallbackList driven by the user's own loop
        self._callbacks = callbacks if callbacks is not None else self._callbacks
        if method == "fit" and frame is not None and self._call_frame is None:
            self._call_frame = frame  # a Ctrl-C caught inside it is raised again (see _ctrl_c)
        if self.epoch_iterator is None:
            self.epoch_iterator = iterator
        if callbacks is not None:
            if method == "fit" and frame is not None and self._batch_list is None and does_nothing_per_batch(ours):
                self._batch_list = BatchList(callbacks, ours)  # slim from the first epoch's begin on
            dispatched = raising_async_batch_ends(callbacks)  # an error in the pool comes out of the list's hook
            for hook in _CALLBACK_HOOKS:  # the batch hooks: only to stop at a batch's end (a budget), and those
                if hook in BATCH_HOOKS and not (hook == "on_train_batch_end" and self.on_step_end is not None) and hook not in dispatched:
                    continue
                original = getattr(callbacks, hook, None)
                if original is not None and not self._ours(original):
                    self._set(callbacks, hook, self._guarded_hook(hook, original))
            self.watch_batch_hooks(callbacks)
        if method == "fit" and timed and self._python_input and self.batching is None and self.steps == 0:
            self.batching = pass_batching(iterator)
        step = getattr(self.model, _STEP_FUNCTIONS[method], None)
        if step is not None and not self._ours(step):
            self._set(self.model, _STEP_FUNCTIONS[method], self._guarded_step(
                step, training=method == "fit", only_validating=method == "evaluate" and not timed, predicting=method == "predict"))
        if method == "fit" and self.evaluations is None:  # a callback's evaluate (test_on_batch, and train_on_batch: it
            # resets the loss tracker too, and its step is not one of the fit's) inside an epoch
            self.evaluations = EpochEvaluations(lambda: samples_seen(self.model), reads=not self._python_input, noted_by=self if callbacks is not None else None)
            for name, evaluate in ((name, getattr(self.model, name, None)) for name in ("evaluate", "test_on_batch", "train_on_batch")):
                if evaluate is not None and not self._ours(evaluate):
                    own = steps_kept(evaluate, self) if name == "train_on_batch" else evaluate
                    self._set(self.model, name, self._mark(self.evaluations.wrap(own), evaluate))
        source = getattr(iterator, "_get_iterator", None)
        watched = watched_source(source, self, timed, iterator, self._reads_in_step) if self._python_input and source is not None else None
        if watched is not None and not self._ours(source):
            self._set(iterator, "_get_iterator", self._mark(passes_through(watched), source))
            self.counts_batches = self.counts_batches or timed
        adapter = getattr(iterator, "data_adapter", None)  # a PyDataset's workers: an error there comes out of the
        for name in ("on_epoch_begin", "on_epoch_end") if self._python_input and adapter is not None else ():  # pool as
            hook = getattr(adapter, name, None)  # the adapter's epoch ends (stops its enqueuer), outside the iterator
            if callable(hook) and not self._ours(hook):
                self._set(adapter, name, self._mark(passes_through(self._raising_seen(hook, threading.get_ident())), hook))
        if (method == "fit" or ours is not None) and frame is not None and self._fit_watch is None:  # an exception in Keras's
            # own code (fit's; evaluate's or predict's alone: TensorFlow reads predict's input in Python, outside the step)
            self._fit_watch = FitWatch(frame, self.abort, lambda: self.steps)
            see_exit(self._fit_watch)  # as the exception leaves the call, through Keras's handler
        self._sigterm.take()
        self._sigint.take()
        if ours is not None:
            self.watch_later_starts(ours, _START_HOOKS[method])
        return self

    def _ours(self, fn: Any) -> bool:
        return getattr(fn, "_green_guard", None) is self

    def remove(self) -> None:
        """Restore everything wrapped, and the previous SIGTERM handler."""
        for owner, name in reversed(self._wrapped):
            self._restore(owner, name)
        self._wrapped = []
        if self._batch_list is not None:
            self._batch_list.restore()
        if self._fit_watch is not None:
            self._fit_watch.stop()
        self._sigterm.restore()
        self._sigint.restore()
        self._call_frame = None  # the fit's locals (its data) are not kept past it

    def _restore(self, owner: Any, name: str) -> None:
        try:
            current = owner.__dict__.get(name) if hasattr(owner, "__dict__") else None
            if self._ours(current):
                original = current._green_original
                if getattr(original, "__self__", None) is owner and getattr(type(owner), name, None) is not None:
                    delattr(owner, name)  # was the class's method: drop the instance attribute
                else:
                    setattr(owner, name, original)
        except Exception as exc:  # the model or iterator may be gone
            logger.debug("mlflow-green: could not restore %s: %s", name, exc)

    def end_if_fit_left(self) -> None:
        """A hook of another call after the watched ``fit`` raised in Keras's own code, before its watch looked:
        the fit ends now (``FAILED``), so that the call is not taken for the fit's validation."""
        if self.in_own_hook:  # fit's own validation (or predict from one of its hooks): fit runs
            return
        if self._fit_watch is not None and not self._aborted:
            self._fit_watch.end_if_left()  # ends it through abort, as its thread would

    def fit_running(self) -> bool:
        """False once the watched ``fit`` left (an exception in Keras's own code its watch has not seen yet)."""
        return self._fit_watch is None or not self._fit_watch.left()

    @property
    def samples(self) -> int:
        """Samples in the training batches read since :meth:`reset_counts`."""
        return self.read_samples if self.batching is None else self.batching.samples(self.batches)

    @property
    def trained_samples(self) -> int:
        """Of those, the samples of batches a training step finished with (not those of a step that raised)."""
        return self.read_trained_samples if self.batching is None else self.batching.samples(self.trained_batches)

    def reset_counts(self) -> None:
        """A new epoch: input wait and counts start at zero."""
        self.data_wait_s, self.batches, self.read_samples, self.read_trained_samples = 0.0, 0, 0, 0
        self.trained_batches = 0
        self.epoch_first_step, self.step_failed = self.steps, False
        if self.evaluations is not None:
            self.evaluations.epoch_begins()

    # -- wrappers ------------------------------------------------------------------------------
    @property
    def aborted(self) -> bool:
        """True once the call was seen ending with an exception."""
        return self._aborted

    def signal_pending(self) -> bool:
        """True when a Ctrl-C or SIGTERM came during the call and was put off (it arrived in our code): the call is
        being interrupted, whatever ends it first."""
        return self._sigint.pending or self._sigterm.pending

    def abort(self, exc: BaseException) -> None:
        """The call ends with ``exc``: tell the callback once."""
        if self._aborted:
            return
        # a SIGTERM or Ctrl-C meanwhile (to the main thread) waits for the run's end
        with self._sigterm.ending_elsewhere(), self._sigint.ending_elsewhere():
            self._aborted = True
            try:
                self.on_abort(exc)
            except Exception as err:  # measurement never hides the user's exception
                logger.warning("mlflow-green: could not end the measurement: %s", err)

    def _ctrl_c(self) -> None:
        """SIGINT: end the measurement ``KILLED`` (a ``KeyboardInterrupt`` Python drops, or that code inside the fit catches
        and drops, is raised again at the next hook)."""
        call_frame = self._call_frame  # taken before the run ends (which removes the guard)
        self.interrupted = True
        self.abort(KeyboardInterrupt())
        if self._callbacks is not None:
            raise_again_if_lost(self._callbacks)
            raise_again_if_swallowed(self._callbacks, self.model, call_frame)

    def _set(self, owner: Any, name: str, wrapper: Any) -> None:
        try:
            setattr(owner, name, wrapper)
        except Exception as exc:  # an object that takes no attributes: what it raises is seen by the fit's watch
            logger.debug("mlflow-green: could not watch %s.%s: %r", type(owner).__name__, name, exc)
            return
        self._wrapped.append((owner, name))

    def _mark(self, wrapper: Any, original: Any) -> Any:
        wrapper._green_guard = self
        wrapper._green_original = original
        return wrapper

    def _step_raised(self, exc: BaseException, *, training: bool, only_validating: bool) -> None:
        """A step raised ``exc``: end the call (unless the data ran out: Keras ends the epoch and goes on); a Ctrl-C
        the framework raised as something else is raised as ``KeyboardInterrupt`` from it (else the caller re-raises)."""
        if not end_of_data(exc) and (self.validating or not only_validating):
            self.step_failed = self.step_failed or training
            self.abort(exc)
        if self.interrupted and not isinstance(exc, KeyboardInterrupt):
            raise ctrl_c_from(exc) from exc

    def _guarded_step(self, original: Callable[..., Any], *, training: bool, only_validating: bool = False,
                      predicting: bool = False) -> Callable[..., Any]:
        """``only_validating``: the test step of a fit's validation, which the model's ``evaluate`` from a callback
        of the fit calls too (an error there, caught by that callback, does not end the fit). ``predicting``: the
        samples of each call's outputs are counted (TensorFlow reads predict's input inside the step: of unknown
        size — a generator, a ``PyDataset``, ``tf.data`` — they are the only count)."""
        guard = self

        def step(*args: Any, **kwargs: Any) -> Any:
            try:
                outputs = original(*args, **kwargs)
            except BaseException as exc:
                guard._step_raised(exc, training=training, only_validating=only_validating)
                raise
            if training:
                guard.steps += 1
                guard.read_trained_samples, guard.trained_batches = guard.read_samples, guard.batches
                if guard.on_step_end is not None:
                    guard.on_step_end()
            else:
                guard.test_steps += 1
                if predicting:
                    guard.predicted += leading_dim(outputs)
            return outputs

        def train_step(*args: Any, **kwargs: Any) -> Any:  # the hot path: fit's step, nothing else per step
            try:
                outputs = original(*args, **kwargs)
            except BaseException as exc:
                guard._step_raised(exc, training=True, only_validating=False)
                raise
            guard.steps += 1
            return outputs

        def jax_train_step(state: Any, data: Any) -> Any:  # as JAX's fit calls it (a call with *args costs more), over
            try:  # arrays: the batches it read (inside it) trained — a callback's train_on_batch reads none
                outputs = original(state, data)
            except BaseException as exc:
                guard._step_raised(exc, training=True, only_validating=False)
                raise
            guard.steps += 1
            guard.trained_batches = guard.batches
            return outputs

        if training and self.on_step_end is None and not self._python_input:  # no batch read in Python (TensorFlow)
            return self._mark(passes_through(train_step), original)
        if training and self.on_step_end is None and self._reads_in_step and self.batching is not None:
            return self._mark(passes_through(jax_train_step), original)
        return self._mark(passes_through(step), original)
