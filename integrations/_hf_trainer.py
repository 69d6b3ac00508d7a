"""How the Hugging Face callback watches its ``Trainer`` where the callback events say too little.

The Trainer gives callbacks no event when ``evaluate()`` or ``predict()`` starts, nor the batches
of a training step. So the callback finds its Trainer on the call stack (at ``on_init_end`` and
``on_train_begin``) and wraps four methods *of that instance* (never of the class):

- ``training_step``: batch sizes, the first batch (for the FLOPs), a step that raises;
- ``evaluate`` / ``predict``: the start and the end of an evaluation outside ``train()``, and an
  evaluation that raises. Nested calls (``evaluate`` of a dict of datasets calls itself) and calls
  inside ``train()`` pass straight through;
- ``train``: an exception out of it that no callback event saw (raised outside a training step: data
  loading, an evaluation, another callback) ends the training's measurement at once; while the callback
  measures a call in another thread, it stands aside for it
  (:mod:`~mlflow_green.integrations._hf_threads`), back in place however it ends.

Example::

    watch_evaluations(trainer, on_begin=begin, on_end=end)   # begin(kind) / end(kind, status)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

from mlflow_green.integrations._fit_watch import FitWatch
from mlflow_green.integrations._hf_threads import put_back, stood_aside
from mlflow_green.measure.signal_safety import passes_through

logger = logging.getLogger(__name__)

_WATCHED = "_mlflow_green_watched"
"""Attribute of a wrapper: which of our callbacks made it (so that a second watch is a no-op)."""


def trainer_of(callback: Any) -> Any:
    """The Trainer whose callback handler is calling ``callback`` (found on the call stack), or None."""
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        handler = getattr(candidate, "callback_handler", None)
        if handler is not None and any(cb is callback for cb in getattr(handler, "callbacks", ())):
            return candidate
        frame = frame.f_back
    return None


def evaluation_kind(method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """``validate`` for ``evaluate()``, ``test`` for ``evaluate(metric_key_prefix="test…")``, ``predict``.

    Example:
        >>> evaluation_kind("evaluate", (), {}), evaluation_kind("evaluate", (), {"metric_key_prefix": "test"})
        ('validate', 'test')
    """
    if method == "predict":
        return "predict"
    prefix = kwargs.get("metric_key_prefix", args[2] if len(args) > 2 else "eval")
    return "test" if str(prefix).startswith("test") else "validate"


def watch_evaluations(
    trainer: Any,
    owner: Any,
    *,
    busy: Callable[[], bool],
    elsewhere: Callable[[], bool],
    on_begin: Callable[[str], None],
    on_end: Callable[[str, str], None],
) -> None:
    """Wrap ``trainer.evaluate`` and ``trainer.predict`` (once per ``owner``).

    Args:
        trainer: The Trainer.
        owner: The callback (a second call with the same owner changes nothing).
        busy: True while the callback measures a training: evaluations then pass through.
        elsewhere: True while the callback measures a call in another thread: the evaluation goes unmeasured,
            the callback out of the Trainer's callbacks meanwhile (:func:`~._hf_threads.stood_aside`).
        on_begin: Called with the kind (:func:`evaluation_kind`) before an evaluation outside ``train()``.
        on_end: Called with the kind and ``FINISHED`` / ``FAILED`` / ``KILLED`` after it.
    """
    for method in ("evaluate", "predict", "train"):  # train: only to stand aside (and put back) in another thread
        current = getattr(trainer, method, None)
        if current is None or getattr(current, _WATCHED, None) is owner:
            continue
        while getattr(current, _WATCHED, None) is not None:  # another GreenCallback's (replaced, e.g. by a restore)
            current = current.__wrapped__
        setattr(trainer, method, _measured(method, current, trainer, owner, (busy, elsewhere), on_begin, on_end))


def _measured(method: str, original: Callable[..., Any], trainer: Any, owner: Any,
              busy: tuple[Callable[[], bool], Callable[[], bool]], on_begin: Callable[[str], None],
              on_end: Callable[[str, str], None]) -> Callable[..., Any]:
    depth = [0]
    busy_here, busy_elsewhere = busy
    # train() calls of this Trainer in progress (not its is_in_train: a train() that raised leaves that set)
    trainings = vars(trainer).setdefault("_mlflow_green_trainings", [0])  # counted by watched_train

    def measured(*args: Any, **kwargs: Any) -> Any:
        if busy_elsewhere():
            with stood_aside(trainer, owner, method):
                return original(*args, **kwargs)
        put_back(trainer, owner)  # a training that stood aside in the other thread and raised left a stand-in
        if method == "train":
            return watched_train(trainer, original, *args, **kwargs)
        if depth[0] or busy_here() or trainings[0]:
            return original(*args, **kwargs)
        kind = evaluation_kind(method, args, kwargs)
        depth[0] += 1
        status = "FAILED"
        try:
            _safely(on_begin, kind)
            result = original(*args, **kwargs)
            status = "FINISHED"
            return result
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C, a SIGTERM handler's or a callback's sys.exit
            status = "KILLED"
            raise
        finally:
            depth[0] -= 1
            _safely(on_end, kind, status)

    passes_through(measured)
    setattr(measured, _WATCHED, owner)
    measured.__wrapped__ = original  # type: ignore[attr-defined]
    return measured


@passes_through
def watched_train(trainer: Any, train: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``train(*args, **kwargs)`` (``trainer``'s ``train()``) with its end told to the Trainer's callbacks: the
    exception it raises (outside a step: data loading, an evaluation, a callback — no hook saw it) or its return
    (every callback's ``on_train_end`` done). :func:`train_wrapped` is True meanwhile. Run by the instance's wrapper
    of ``train`` and, for a Trainer made before ``mlflow_green.autolog()``, by its wrapper of the training loop."""
    trainings = vars(trainer).setdefault("_mlflow_green_trainings", [0])
    trainings[0] += 1
    try:
        result = train(*args, **kwargs)
    except BaseException as exc:
        _tell_callbacks(trainer, "_train_raised", exc)
        raise
    finally:
        trainings[0] -= 1
    _tell_callbacks(trainer, "_train_returned")  # every callback's on_train_end done: their runs end now
    return result


def _tell_callbacks(trainer: Any, name: str, *args: Any) -> None:
    """``train()`` raised (``_train_raised``) or returned (``_train_returned``): each of the Trainer's callbacks that can
    tell ends the training it measures now. All of them, not only the callback that wrapped ``train``: one restored
    from a checkpoint replaces its original, and two GreenCallbacks may share a Trainer."""
    for callback in list(getattr(getattr(trainer, "callback_handler", None), "callbacks", None) or ()):
        told = getattr(callback, name, None)
        if callable(told):
            _safely(told, *args)


def train_wrapped(trainer: Any) -> bool:
    """True while a ``train()`` of ``trainer`` runs through the wrapper (its return and its exception are seen)."""
    return trainer is not None and getattr(trainer, "__dict__", {}).get("_mlflow_green_trainings", [0])[0] > 0


def watch_unwrapped_train(trainer: Any, frame: Any, on_left: Callable[[BaseException], None],
                          activity: Callable[[], int]) -> FitWatch | None:
    """A watch of the ``train()`` running in ``frame`` if it did not go through the wrapper (the callback was added
    after the Trainer was made): ``on_left`` is called within two looks of its raising. None where the wrapper
    sees it (or there is no frame)."""
    if frame is None or (trainer is not None and vars(trainer).get("_mlflow_green_trainings", [0])[0]):
        return None
    return FitWatch(frame, on_left, activity)


def watch_training_step(trainer: Any, *, on_batch: Callable[[Any, Any], None], on_trained: Callable[[Any], None],
                        on_failure: Callable[[BaseException], None]) -> None:
    """Wrap ``trainer.training_step``: ``on_batch(model, inputs)`` before each step, ``on_trained(inputs)``
    after it, ``on_failure(exc)`` if it raises (its batch was not trained)."""
    original = trainer.training_step

    def training_step(model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        on_batch(model, inputs)
        try:
            loss = original(model, inputs, *args, **kwargs)
        except BaseException as exc:
            on_failure(exc)
            raise
        on_trained(inputs)
        return loss

    trainer.training_step = passes_through(training_step)


def unwatch_training_step(trainer: Any) -> None:
    """Undo :func:`watch_training_step` (the class's method shows through again)."""
    if trainer is not None and "training_step" in vars(trainer):
        try:
            del trainer.training_step
        except Exception:
            pass


def dataset_length(dataloader: Any) -> int | None:
    """Samples in a dataloader's dataset (all ranks), when it has a length."""
    try:
        return len(dataloader.dataset)
    except Exception:
        return None


def _safely(function: Callable[..., None], *args: Any) -> None:
    """Measurement never breaks an evaluation."""
    try:
        function(*args)
    except Exception as exc:
        logger.warning("mlflow-green: could not measure the evaluation or end the training's measurement: %s", exc)
