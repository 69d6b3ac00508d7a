"""How many samples a Keras ``fit`` epoch, ``evaluate`` or ``predict`` processed.

Keras does not tell callbacks the batch size. In order of preference:

1. the samples actually seen: the built-in train and test steps add each batch's size to the
   loss tracker's ``count`` (reset at each epoch and evaluation), which covers inputs of unknown
   length — ``tf.data`` batched without ``drop_remainder``, ``.repeat()`` with
   ``steps_per_epoch``, generators — and epochs cut short by a stop;
2. (torch and JAX backends) the batches read from the data iterator, counted by the guard;
3. the data adapter's figures (arrays, tensors, datasets of known cardinality).

Example:
    >>> adapter_samples(None) is None
    True
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

from mlflow_green.integrations._keras_evaluations import evaluations_in
from mlflow_green.integrations._keras_frames import caller_frame

logger = logging.getLogger(__name__)


def samples_seen(model: Any) -> int | None:
    """Samples the built-in steps processed since the metrics were last reset (None when unknown)."""
    tracker = getattr(model, "_loss_tracker", None)
    count = getattr(tracker, "count", None)
    if count is None:
        return None
    try:
        import keras

        value = float(keras.ops.convert_to_numpy(count.value if hasattr(count, "value") else count))
    except Exception:
        return None
    return int(round(value)) if value > 0 else None


def train_samples_seen(model: Any, guard: Any) -> int | None:
    """The epoch's training samples the train step counted, across the evaluations run in the epoch (each resets the
    count: ``_keras_evaluations``; ``guard``: the fit's)."""
    return evaluations_in(guard).train_seen(samples_seen(model))


def adapter_samples(epoch_iterator: Any) -> int | None:
    """Samples per pass as the epoch iterator's data adapter knows them (None when it does not)."""
    try:
        adapter = epoch_iterator.data_adapter
        steps = epoch_iterator.num_batches
        batch_size = adapter.batch_size
        if not steps or not batch_size or adapter.num_batches is None:
            return None  # (an input whose size the adapter does not know — a torch IterableDataset — may end partial)
        per_epoch = getattr(epoch_iterator, "steps_per_epoch", None)
        if per_epoch and per_epoch != adapter.num_batches:  # epochs that are not whole passes: one may be cut
            return None  # short where the data runs out (its last batches partial): the steps' count tells
        if steps == adapter.num_batches and adapter.has_partial_batch and adapter.partial_batch_size:
            return int((steps - 1) * batch_size + adapter.partial_batch_size)
        if steps == adapter.num_batches and adapter.has_partial_batch is None:
            return None  # a last batch of unknown size (tf.data without drop_remainder)
        return int(steps * batch_size)
    except Exception:
        return None


class PassBatching(NamedTuple):
    """How a pass over arrays splits into batches: ``batches`` of ``batch_size`` samples, the last of ``last_size``.

    Example:
        >>> PassBatching(batch_size=32, batches=44, last_size=24).samples(44), PassBatching(32, 44, 24).samples(3)
        (1400, 96)
    """

    batch_size: int
    batches: int
    last_size: int

    def samples(self, read: int) -> int:
        """Samples in the first ``read`` batches (from a pass's start)."""
        passes, rest = divmod(read, self.batches)
        return passes * ((self.batches - 1) * self.batch_size + self.last_size) + rest * self.batch_size


def pass_batching(epoch_iterator: Any) -> PassBatching | None:
    """The batching of an epoch iterator over arrays (Keras's ``ArrayDataAdapter``: it slices them itself, every batch
    full but the pass's last) whose epochs are whole passes; None for any other input, whose batches are counted one by
    one (a generator or ``PyDataset`` yields what it likes; a ``DataLoader``'s sampler may draw other than its dataset)."""
    adapter = getattr(epoch_iterator, "data_adapter", None)
    if type(adapter).__name__ != "ArrayDataAdapter" or not adapter_samples(epoch_iterator):
        return None
    try:
        size, batches = adapter.batch_size, adapter.num_batches
        last = adapter.partial_batch_size if adapter.has_partial_batch else size
        if not all(type(n) is int and n > 0 for n in (size, batches, last)):
            return None
        return PassBatching(size, batches, last)
    except Exception:
        return None


class AdapterCounts:
    """:func:`adapter_samples` of a fit's iterators, each worked out once it is known.

    ``fit`` keeps its training and validation iterators for all its epochs, and their adapters do
    not change: a count is asked once per iterator (a count unknown until the first pass ends —
    ``tf.data`` of unknown cardinality — is asked again). An iterator is held weakly: forgetting it
    never runs its (and its dataset's) teardown inside a callback hook. Copies and pickles start empty.
    """

    def __init__(self) -> None:
        self._known: dict[int, tuple[weakref.ref[Any], int]] = {}

    def __call__(self, iterator: Any) -> int | None:
        known = self._known.get(id(iterator))
        if known is not None and known[0]() is iterator:
            return known[1]
        count = adapter_samples(iterator)
        if count:
            try:
                self._known[id(iterator)] = (weakref.ref(iterator), count)
            except TypeError:  # not weakly referable: asked each time
                pass
        return count

    def clear(self) -> None:
        """Forget the iterators (a fit ended or starts)."""
        self._known = {}

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (AdapterCounts, ())


def iterator_of_caller(method: str) -> Any:
    """The ``epoch_iterator`` of the running ``fit`` / ``evaluate`` / ``predict`` (None when not found)."""
    frame = caller_frame(method)
    return frame.f_locals.get("epoch_iterator") if frame is not None else None


def samples_cut_short(validation_counted: int | None, guard: Any, model: Callable[[], Any]) -> int | None:
    """Samples an epoch ended early (an exception, an interrupt) trained: those seen, never a full epoch's.

    ``validation_counted``: the epoch's count taken as its validation began (its training was complete
    then); ``guard``: the fit's :class:`~mlflow_green.integrations._keras_guard.CallGuard` (or None);
    ``model``: returns the model (called only if needed: on JAX, the callback's ``model`` syncs its state)."""
    if validation_counted is not None:
        return validation_counted
    if guard is not None and guard.counts_batches:  # torch, JAX: the batches read, less one its step never trained
        return guard.trained_samples
    keras_model = model()
    seen = train_samples_seen(keras_model, guard)
    if _own_step(keras_model) and (not seen or seen == _batches_this_epoch(guard, keras_model)):
        return finished_batches_samples(guard, keras_model)  # a step that counts no samples (or batches)
    if seen and guard is not None and guard.step_failed:  # TensorFlow counts the failing batch before its step raises
        batch = getattr(getattr(guard.epoch_iterator, "data_adapter", None), "batch_size", None)
        per_call = getattr(keras_model, "steps_per_execution", 1) or 1  # a failing call's earlier steps: not counted
        if isinstance(batch, int) and batch > 0 and isinstance(per_call, int):
            return min(seen, (guard.steps - guard.epoch_first_step) * per_call * batch)
    return seen


def evaluation_cut_short(guard: Any, model: Callable[[], Any], iterator: Any) -> int | None:
    """Samples a validation (or an ``evaluate``) that ended early evaluated: its finished test steps' batches
    (``iterator``: its epoch iterator), at most the metrics' count since it began (TensorFlow counts a failing
    batch before its step raises); the metrics' count alone when the batch size is unknown. None of its steps
    finished (the guard's wrapper of the test step counted none): nothing evaluated — the count is not read then (on
    JAX it is the fit's training count, synced back into the model: the evaluation's own state never began)."""
    if guard is not None and guard.test_steps == 0 and guard._ours(getattr(guard.model, "test_function", None)):
        return 0
    keras_model = model()
    seen = samples_seen(keras_model)
    batch = getattr(getattr(iterator, "data_adapter", None), "batch_size", None)
    per_call = getattr(keras_model, "steps_per_execution", 1) or 1
    if guard is None or not isinstance(batch, int) or batch <= 0 or not isinstance(per_call, int):
        return seen
    finished = guard.test_steps * per_call * batch
    whole = adapter_samples(iterator)  # a last partial batch
    finished = min(finished, whole) if whole else finished
    return finished if seen is None else min(seen, finished)


def call_cut_short(kind: str, guard: Any, model: Callable[[], Any]) -> int | None:
    """Samples an ``evaluate`` alone (``kind`` "test") that ended early evaluated (see :func:`evaluation_cut_short`;
    ``guard``: the call's); for ``predict``, those its finished steps returned outputs for."""
    if guard is None:
        return None
    return evaluation_cut_short(guard, model, guard.epoch_iterator) if kind == "test" else guard.predicted or None


def count_cut_short(session: Any, validation_counted: int | None, guard: Any, model: Callable[[], Any],
                    option: int | None = None) -> None:
    """Count what an epoch ended early trained (:func:`samples_cut_short`; ``option``, ``samples_per_epoch``: its share)
    and what the validation it was in evaluated (its energy is billed to validation up to the end: so are its samples)."""
    by_option = option and validation_counted is None  # (a count taken as the validation began is the whole epoch's)
    session.count("train", _option_for_epoch(option, guard, model) if by_option else samples_cut_short(validation_counted, guard, model))
    tracker = session.tracker
    if tracker is not None and tracker.running and tracker.opened("validation") is not None:
        keras_model = model()  # once: on JAX each read syncs the model's state
        validation = getattr(keras_model, "_eval_epoch_iterator", None)
        session.count("validation", evaluation_cut_short(guard, lambda: keras_model, validation))


def epoch_train_samples(option: int | None, guard: Any, model: Callable[[], Any], adapter_counts: AdapterCounts) -> int | None:
    """Training samples of an epoch: ``option`` (``samples_per_epoch``), else the cheapest exact count — the
    batches read (torch, JAX), the adapter's count of a completed epoch of known size, the train step's count
    (``model``: as for :func:`samples_cut_short`)."""
    if option:
        return _option_for_epoch(option, guard, model)
    if guard is not None and guard.samples:
        return guard.samples
    keras_model = model()
    if guard is not None and guard.outside_fit:  # a loop of the user's own drives the callbacks: no count to trust
        _warn_once(type(keras_model).__name__ + " loop", OWN_LOOP)
        return None
    if guard is not None and guard.steps == guard.epoch_first_step and not guard.samples:  # no train step ran
        if not getattr(guard, "warned_no_batch", False):  # once a fit (TensorFlow's metrics count a batch anyway)
            guard.warned_no_batch = True
            logger.warning(NO_BATCH)
        return 0
    batches = _batches_this_epoch(guard, keras_model)
    whole = batches is not None and batches >= (getattr(getattr(guard, "epoch_iterator", None), "num_batches", None) or 0) > 0
    if guard is not None and not guard.stop_requested and (whole or not getattr(keras_model, "stop_training", False)):
        known = adapter_counts(guard.epoch_iterator)  # an epoch stopped at its end (EarlyStopping) is whole
        if known:
            return known
    seen = train_samples_seen(keras_model, guard)
    if seen is not None and seen == batches and _own_step(keras_model):  # batches, not samples
        counted = finished_batches_samples(guard, keras_model)
        if counted is None:
            _warn_counts_batches(keras_model)
        return counted
    counted = seen or finished_batches_samples(guard, keras_model)
    if not counted and batches:  # trained, and no count: say so rather than leave the figures out silently
        _warn_once(type(keras_model).__name__ + " unknown", UNKNOWN.format(name=type(keras_model).__name__))
    return counted


def _option_for_epoch(option: int, guard: Any, model: Callable[[], Any]) -> int:
    """``samples_per_epoch`` for a whole epoch; for one cut short (a budget, ``stop_training``, an exception) the share
    its finished steps trained — when the epoch's batches are known, else the whole option."""
    total = getattr(getattr(guard, "epoch_iterator", None), "num_batches", None)
    if guard is not None and not guard.outside_fit and guard.steps == guard.epoch_first_step:
        return 0  # no train step ran (empty input)
    if guard is None or not isinstance(total, int) or total <= 0 or guard.steps - guard.epoch_first_step >= total:
        return option  # whole (or of unknown length): no model read on the usual path (on JAX it syncs the state)
    batches = _batches_this_epoch(guard, model())
    return option if batches is None or batches >= total else round(option * batches / total)


def finished_batches_samples(guard: Any, model: Any) -> int | None:
    """Samples of the epoch's finished training batches where the input's batching is known — a whole pass over an
    input of known size (arrays, a ``PyDataset`` of known batch size), every batch full but the pass's last — for a
    train step that does not count samples (a ``train_step`` of your own), whole epoch or cut short; else None."""
    iterator = getattr(guard, "epoch_iterator", None)
    batch = getattr(getattr(iterator, "data_adapter", None), "batch_size", None)
    whole, batches = adapter_samples(iterator), _batches_this_epoch(guard, model)
    if not whole or type(batch) is not int or batch <= 0 or batches is None:
        return None
    return min(batches * batch, whole)


def _batches_this_epoch(guard: Any, model: Any) -> int | None:
    """Training batches the epoch's finished step calls covered (None without a guard)."""
    if guard is None:
        return None
    per_call = getattr(model, "steps_per_execution", 1)
    return (guard.steps - guard.epoch_first_step) * (per_call if isinstance(per_call, int) and per_call > 0 else 1)


def _own_step(model: Any, step: str = "train_step") -> bool:
    """The model's class (or one of its bases outside Keras) defines ``step`` (``train_step``, ``test_step``): the
    user's own."""
    return any(step in vars(cls) and not cls.__module__.startswith("keras.") for cls in type(model).__mro__)


def evaluation_samples(counted: int | None, guard: Any, model: Callable[[], Any], *, validation: bool) -> int | None:
    """The samples of a fit's ``validation`` or an ``evaluate`` that ended: ``counted`` (its data adapter's count), else
    the samples read from its input (torch, JAX; ``guard``: the fit's, or the evaluate's own), else the test step's
    count in the loss tracker — None (said once) where a ``test_step`` of the user's own counts batches there, or
    nothing."""
    if counted:
        return counted
    read = 0 if guard is None else guard.test_samples if validation else guard.samples if guard.counts_batches else 0
    if read:
        return read
    keras_model = model()
    seen = samples_seen(keras_model)
    if _own_step(keras_model, "test_step"):
        per_call = getattr(keras_model, "steps_per_execution", 1)
        per_call = per_call if isinstance(per_call, int) and per_call > 0 else 1
        steps = getattr(guard, "test_steps", None)
        # batches, not samples: as many as the steps (on TensorFlow, one more as the input ends), or none at all
        if not seen or (steps is not None and seen <= (steps + 1) * per_call):
            _warn_once(type(keras_model).__name__ + " test", OWN_TEST_STEP.format(name=type(keras_model).__name__))
            return None
    return seen


_WARNED: set[str] = set()
UNKNOWN = ("mlflow-green: the samples {name} trained in this fit are not known (its input's size is not, and its "
           "metrics did not count them: a tf.distribute strategy's input, a train_step of your own): "
           "green/energy_per_sample_j and green/flop_per_j are left out. Pass GreenCallback(samples_per_epoch=...).")
NO_BATCH = ("mlflow-green: an epoch of this fit trained no batch (its input is empty): it counts no sample, and a fit "
            "that trained none has no green/energy_per_sample_j or green/flop_per_j")
OWN_TEST_STEP = ("mlflow-green: {name}'s own test_step counts no samples in the loss tracker (update_state(loss) without "
                 "a sample_weight adds 1 per batch), and its input's size is not known: the samples it evaluates are "
                 "left out (no green/energy_per_sample_test_j, nor the fit's green/flop_per_j). Update the tracker with "
                 "sample_weight=batch size as Keras's own test_step does, or pass arrays.")
OWN_LOOP = ("mlflow-green: GreenCallback is driven by a training loop of your own (a CallbackList called by hand, not "
            "model.fit): the samples it trains are not known (train_on_batch resets the metrics' counts at every call), "
            "so green/energy_per_sample_j and green/flop_per_j are left out. Pass GreenCallback(samples_per_epoch=...).")


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(message)


def _warn_counts_batches(model: Any) -> None:
    name = type(model).__name__
    _warn_once(name, (
        f"mlflow-green: {name}'s own train_step adds 1 per batch to the loss tracker (update_state(loss) without a "
        "sample_weight), so the samples it trained are not known here: green/energy_per_sample_j and "
        "green/flop_per_j are left out. Pass GreenCallback(samples_per_epoch=...), or update the tracker with "
        "sample_weight=batch size as Keras's own train_step does."))
