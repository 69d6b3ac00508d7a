"""The Keras GreenCallback's own cost on a digits-zoo model: per epoch and fixed per fit.

The baseline CNN of ``examples/keras_digits.py`` (two convolutions, 0.2 M parameters) trains on
scikit-learn's digits (1 400 samples, batch 32, validation on 397), with and without the
callback, alternately; see ``benchmarks/_overhead.py`` for what is timed. Each fit runs inside an
active MLflow run on a sqlite store (``--own-run``: the callback starts and ends its own).

Usage::

    python benchmarks/callback_overhead_keras.py [--repeats 4] [--epochs 10] [--backend tensorflow|torch|jax] [--own-run] [--fake-meter]

``--fake-meter`` measures with a meter whose read costs nothing, to tell the callback's own cost
from the meters' (reading counters, and under ``scope=process`` this process tree's share).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

from _keras_backend import use_backend_from_argv  # noqa: E402

use_backend_from_argv()  # before Keras is imported

import keras  # noqa: E402
import mlflow  # noqa: E402
from _in_fit_probe import InFitProbe  # noqa: E402
from _overhead import TRAINING_ENDED, report, timed_hooks  # noqa: E402
from keras_digits import baseline  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from mlflow_green.integrations._keras_batch_list import does_nothing_per_batch  # noqa: E402
from mlflow_green.integrations._keras_guard import CallGuard  # noqa: E402
from mlflow_green.integrations._keras_input import watched_source  # noqa: E402
from mlflow_green.integrations._keras_samples import pass_batching  # noqa: E402
from mlflow_green.integrations.keras import GreenCallback  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

BATCH_SIZE = 32
EPOCH_HOOKS = {"on_epoch_begin", "on_epoch_end", "on_test_begin", "on_test_end"}
FIT_HOOKS = {"on_train_begin", "on_train_end", "_finish"}  # the fit's end: once every callback's on_train_end returned
TimedGreenCallback = timed_hooks(GreenCallback, EPOCH_HOOKS | FIT_HOOKS)
EPOCH_HOOKS |= {TRAINING_ENDED}  # timed by TimedGreenCallback's session


class EpochEnds(keras.callbacks.Callback):
    """Records when each epoch ends (placed after GreenCallback, so its work is inside)."""

    def __init__(self) -> None:
        super().__init__()
        self.ends_s: list[float] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.ends_s.append(time.perf_counter())


def batch_work(python_input: bool, *, training: bool = True, epoch_iterator: object = None) -> tuple[Callable[[], object], Callable[[], object]]:
    """What the callback adds per batch (``training``) or per validation batch, and a bare stand-in making the
    framework's own calls (the step function, the CallbackList's two batch hooks and, with ``epoch_iterator``
    given, the data iterator's ``next()``): the guard's wrapper of the step function; of the list's
    ``on_train_batch_end`` only where a budget may stop training at a batch's end; the callback's own two batch
    hooks only where Keras still calls them (a subclass with batch hooks of its own: a plain GreenCallback is left
    out of its fit's batch hooks, see ``_keras_batch_list``); and on torch and JAX (``epoch_iterator``: the
    backend's, over the fit's training or validation arrays) the watched iterator's ``next()`` — timed and counted
    for training, watched for validation, as the guard installs them — against a plain ``next()``. The other
    callbacks' own batch hooks are wrapped on them (``_keras_callback_hooks``): none here, as with the callbacks
    Keras adds."""

    class Model:
        stop_training = False

    callback = GreenCallback()
    # as on_train_begin does: without a budget, nothing runs after a step
    guard = CallGuard(Model(), lambda exc: None, python_input=python_input,
                      on_step_end=callback._check_budget if callback.session.budget.active else None)
    if training and python_input and epoch_iterator is not None:  # as the guard's watch of the fit finds it
        guard.batching = pass_batching(epoch_iterator)

    def bare(*args: object) -> None:
        return None

    step = guard._guarded_step(bare, training=training)
    end = guard._guarded_hook("on_train_batch_end", bare) if training and guard.on_step_end is not None else bare
    read = plain_read = bare
    if epoch_iterator is not None:  # the watched iterator, as the guard installs it (JAX: none on a validation input
        batch = next(iter(epoch_iterator._get_iterator()))  # of known size, the wrapped step sees its errors)
        source = watched_source(lambda: itertools.repeat(batch), guard, training, epoch_iterator, guard._reads_in_step)
        watched, plain = (source or (lambda: itertools.repeat(batch)))(), itertools.repeat(batch)
        read, plain_read = (lambda _: next(watched)), (lambda _: next(plain))
    if does_nothing_per_batch(callback):
        return (lambda: (read(0), step(None, None), bare(0), end(0))), (lambda: (plain_read(0), bare(None, None), bare(0), bare(0)))
    own_begin = callback.on_train_batch_begin if training else callback.on_test_batch_begin
    own_end = callback.on_train_batch_end if training else callback.on_test_batch_end
    return (lambda: (read(0), step(None, None), bare(0), end(0), own_begin(0, logs=None), own_end(0, logs=None)),
            lambda: (plain_read(0), bare(None, None), bare(0), bare(0)))


def backend_iterator(x: object, y: object) -> object:
    """The backend's epoch iterator over arrays, whose batches its (watched) data iterator yields (torch, JAX), else None."""
    backend = keras.backend.backend()
    if backend == "jax":
        from keras.src.backend.jax.trainer import JAXEpochIterator as EpochIterator
    elif backend == "torch":
        from keras.src.backend.torch.trainer import TorchEpochIterator as EpochIterator
    else:
        return None
    return EpochIterator(x=x, y=y, batch_size=BATCH_SIZE)


def per_batch_us(python_input: bool, *, training: bool = True) -> float:
    """Microseconds the callback adds per batch, timed in a warm loop (see :func:`batch_work`)."""
    from _overhead import per_call_us

    return per_call_us(*batch_work(python_input, training=training))


def watched_iterator_us(python_input: bool, epoch_iterator: object = None) -> float:
    """Microseconds the watched iterator adds to each batch read in Python (torch, JAX), timed in a loop (over
    ``epoch_iterator``'s batching, as the guard's watch of the fit finds it)."""
    if not python_input:
        return 0.0
    class Model:
        stop_training = False

    guard = CallGuard(Model(), lambda exc: None, python_input=python_input)
    guard.batching = pass_batching(epoch_iterator)
    batch = ([0.0] * 32, [0] * 32)
    items = [batch] * 100_000
    start_s = time.perf_counter()
    for _ in iter(items):
        pass
    bare_s = time.perf_counter() - start_s
    start_s = time.perf_counter()
    for _ in watched_source(lambda: iter(items), guard, True)():
        pass
    return max(time.perf_counter() - start_s - bare_s, 0.0) / len(items) * 1e6


class BatchProbe(keras.callbacks.Callback):
    """In the fits without GreenCallback: the per-batch work run once per batch, where it would run (see
    ``_in_fit_probe``) — at every batch of the odd epochs, as warm as a fit with the callback runs it (at each of
    its batches), and the bare stand-in at every batch of the even ones (not the two alternately at each batch,
    which ran each every other batch only: colder than in a fit)."""

    def __init__(self, python_input: bool, train: object = None, validation: object = None) -> None:
        super().__init__()
        self.train, self.validation = (InFitProbe(*batch_work(python_input, training=t, epoch_iterator=e))
                                       for t, e in ((True, train), (False, validation)))
        self.odd = False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.odd = bool(epoch % 2)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.train.run(work=self.odd)

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.validation.run(work=self.odd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--backend", default=os.environ["KERAS_BACKEND"])
    parser.add_argument("--own-run", action="store_true", help="no active run: the callback starts its own")
    parser.add_argument("--fake-meter", action="store_true", help="a meter whose reads cost nothing")
    args = parser.parse_args()
    data = load_digits()
    x, y = (data.data / 16.0).astype("float32"), data.target.astype("int64")
    train, val = (x[:1400], y[:1400]), (x[1400:], y[1400:])
    steps = -(-1400 // BATCH_SIZE)

    def timed_fit(with_callback: bool) -> tuple[float, list[float]]:
        model = baseline()
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(*train, batch_size=BATCH_SIZE, epochs=1, verbose=0)  # trace: not part of either figure
        ends = EpochEnds()
        meters = [FakeMeter({"cpu:0": 50.0, "ram:0": 5.0})] if args.fake_meter else None
        callbacks = [TimedGreenCallback(meters=meters), ends] if with_callback else [probe, ends]
        run = None if args.own_run else mlflow.start_run()
        start_s = time.perf_counter()
        model.fit(*train, validation_data=val, batch_size=BATCH_SIZE, epochs=args.epochs, callbacks=callbacks, verbose=0)
        total_s = time.perf_counter() - start_s
        if run is not None:
            mlflow.end_run()
        return total_s, [b - a for a, b in zip(ends.ends_s, ends.ends_s[1:])]

    python_input = keras.backend.backend() in ("torch", "jax")
    probe = BatchProbe(python_input, backend_iterator(*train), backend_iterator(*val))  # the watched next() in place too
    iterator_us = watched_iterator_us(python_input, backend_iterator(*train))  # in a warm loop: printed for information
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_GREEN_SPOOL_DIR"] = str(Path(tmp) / "spool")
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/bench.db")
        mlflow.set_experiment("callback-overhead")
        report(
            name=f"Keras ({keras.backend.backend()}) fit, digits baseline CNN"
            + (", callback's own run" if args.own_run else ", in an active run")
            + (", meter reads free (fake meter)" if args.fake_meter else ", meters selected on this machine"),
            timed_fit=timed_fit, repeats=args.repeats, epochs=args.epochs, steps=steps,
            epoch_hooks=EPOCH_HOOKS, fit_hooks=FIT_HOOKS,
            per_batch_us=per_batch_us(python_input) + iterator_us, per_batch_extra_us=0.0,
            validation_steps=-(-len(val[0]) // BATCH_SIZE), per_validation_batch_us=per_batch_us(python_input, training=False),
            batch_probe=probe.train, validation_probe=probe.validation,
        )


if __name__ == "__main__":
    main()
