"""The Lightning GreenCallback's own cost on a digits-zoo model: per epoch and fixed per fit.

The baseline CNN of ``examples/lightning_digits.py`` (two convolutions, 0.15 M parameters)
trains on scikit-learn's digits (1 400 samples, batch 32, validation on 397), with and without
the callback, alternately; see ``benchmarks/_overhead.py`` for what is timed. Each fit runs inside
an active MLflow run on a sqlite store (``--own-run``: the callback starts and ends its own).

Usage::

    python benchmarks/callback_overhead_lightning.py [--repeats 4] [--epochs 10] [--own-run] [--fake-meter] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

import lightning  # noqa: E402
import mlflow  # noqa: E402
import torch  # noqa: E402
from _in_fit_probe import InFitProbe  # noqa: E402
from _overhead import TRAINING_ENDED, per_call_us, report, timed_hooks  # noqa: E402
from lightning.pytorch.trainer.call import _call_callback_hooks  # noqa: E402
from lightning_digits import Classifier, baseline  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from mlflow_green.integrations._lightning_fetch import FetchTimer  # noqa: E402
from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

BATCH_SIZE = 32
FIT_HOOKS = {"setup", "on_fit_start", "on_train_start", "teardown"}  # setup starts the meters; the fit ends (its run
# too) at our teardown, after every on_fit_end
EPOCH_HOOKS = {"on_train_epoch_start", "on_train_epoch_end", "on_validation_start", "on_validation_end"}
TimedGreenCallback = timed_hooks(GreenCallback, EPOCH_HOOKS | FIT_HOOKS)
EPOCH_HOOKS |= {TRAINING_ENDED}  # the reading as the fit loop ends an epoch: timed by TimedGreenCallback's session


class StandInTrainer:
    """The parts of a fitting Trainer the batch hooks and Lightning's dispatch read: a real Trainer's loops and
    profiler, the fit's loaders, and its callback list."""

    should_stop = sanity_checking = False
    lightning_module = None

    def __init__(self, callbacks: list[lightning.Callback] | None = None) -> None:
        real = lightning.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
        self.fit_loop, self.profiler = real.fit_loop, real.profiler
        data = TensorDataset(torch.zeros(1400, 64), torch.zeros(1400))
        self.train_dataloader = DataLoader(data, batch_size=BATCH_SIZE, shuffle=True)
        self.val_dataloaders = DataLoader(TensorDataset(torch.zeros(397, 64), torch.zeros(397)), batch_size=BATCH_SIZE)
        self.callbacks = list(callbacks or [])


class Fetcher:
    """Lightning's data fetcher's two hooks around each fetch."""

    _start_profiler: Callable[[], object]
    _stop_profiler: Callable[[], object]


BETWEEN_STEP_HOOKS = (("on_before_backward", (None,)), ("on_after_backward", ()), ("on_before_optimizer_step", (None,)),
                      ("on_before_zero_grad", (None,)))
"""The callback hooks Lightning calls inside each training batch (after ``on_train_batch_start``, before ``_end``)."""


def training_batch_dispatch(trainer: StandInTrainer, batch: object) -> Callable[[], object]:
    """Every callback hook Lightning calls in a training batch, called as Lightning calls them: by its own
    ``_call_callback_hooks`` (a look-up of the hook on each callback in ``trainer.callbacks``; called if callable,
    inside the profiler's ``profile`` context). With and without a callback in the list, the difference is what that
    callback adds to the batch: the loop's iteration over it and whatever of its hooks are called."""

    def run() -> None:
        _call_callback_hooks(trainer, "on_train_batch_start", batch, 0)
        for name, args in BETWEEN_STEP_HOOKS:
            _call_callback_hooks(trainer, name, *args)
        _call_callback_hooks(trainer, "on_train_batch_end", None, batch, 0)

    return run


def validation_batch_dispatch(trainer: StandInTrainer, batch: object) -> Callable[[], object]:
    """The callback hooks Lightning calls in a validation batch, called as :func:`training_batch_dispatch` calls them."""

    def run() -> None:
        _call_callback_hooks(trainer, "on_validation_batch_start", batch, 1, 0)
        _call_callback_hooks(trainer, "on_validation_batch_end", None, batch, 1, 0)

    return run


def batch_work(first: bool = False) -> tuple[Callable[[], object], Callable[[], object], GreenCallback]:
    """What GreenCallback adds per batch (a fit's first batch with ``first``), a bare stand-in, and the callback:
    the fetch timed by the fit's FetchTimer (the fetcher's hooks, set by the epoch loop's on_run_start as on_fit_start
    wraps it) over Lightning's own (its epoch loop's hooks, calling the trainer's PassThroughProfiler), and Lightning's
    dispatch of a training batch's callback hooks with the callback in the trainer's list over the same dispatch
    without it (:func:`training_batch_dispatch`): our batch hooks step out at the fit's first batch, the no-ops
    between them are not callable (``_lightning_idle_hooks``)."""
    callback = GreenCallback()
    trainer, without = StandInTrainer([callback]), StandInTrainer()
    loop = trainer.fit_loop.epoch_loop
    callback._fitting = callback._in_epoch = True  # as on_fit_start and on_train_epoch_start leave it
    callback._fetch = timer = FetchTimer.install(trainer)
    timer._loop_run_start = lambda fetcher: (setattr(fetcher, "_start_profiler", loop._on_before_fetch),
                                             setattr(fetcher, "_stop_profiler", loop._on_after_fetch))  # Lightning's
    fetcher, bare = Fetcher(), Fetcher()
    loop.on_run_start(fetcher)  # the timer's: the fetcher's hooks are the timer's from now on
    timer._loop_run_start(bare)
    batch = (torch.zeros(BATCH_SIZE, 64), torch.zeros(BATCH_SIZE))
    with_callback, without_callback = training_batch_dispatch(trainer, batch), training_batch_dispatch(without, batch)

    def hooks() -> None:
        fetcher._start_profiler(), fetcher._stop_profiler()
        with_callback()

    def bare_hooks() -> None:
        bare._start_profiler(), bare._stop_profiler()
        without_callback()

    hooks()
    if first:
        callback._batch_hooks_back()  # as at a fit's end: the next call is a fit's first batch again
    return hooks, bare_hooks, callback


def validation_batch_work() -> tuple[Callable[[], object], Callable[[], object]]:
    """Lightning's dispatch of a validation batch's hooks with GreenCallback in the list (its cost per validation
    batch), and the same dispatch without it."""
    callback = GreenCallback()
    trainer = StandInTrainer([callback])
    callback._fitting = True
    callback._count_validation(trainer)  # as on_validation_start does (a DataLoader: counted from the loop's progress)
    assert not callable(callback.on_validation_batch_end), "the validation batch hook stays in"
    batch = (torch.zeros(BATCH_SIZE, 64), torch.zeros(BATCH_SIZE))
    return validation_batch_dispatch(trainer, batch), validation_batch_dispatch(StandInTrainer(), batch)


class NoBatchHooks(lightning.Callback):
    """A callback with none of the hooks Lightning calls in a batch: what Lightning's dispatch costs for any callback."""


for _name in ("on_train_batch_start", *(name for name, _ in BETWEEN_STEP_HOOKS), "on_train_batch_end",
              "on_validation_batch_start", "on_validation_batch_end"):
    setattr(NoBatchHooks, _name, None)


def floor_work() -> tuple[Callable[[], object], Callable[[], object], Callable[[], object], Callable[[], object]]:
    """Lightning's dispatch of a training and of a validation batch's hooks with :class:`NoBatchHooks` in the list,
    and without it (the floor any callback pays: the loop's iteration over it, a look-up of each hook, none called)."""
    batch = (torch.zeros(BATCH_SIZE, 64), torch.zeros(BATCH_SIZE))
    trainer, without = StandInTrainer([NoBatchHooks()]), StandInTrainer()
    return (training_batch_dispatch(trainer, batch), training_batch_dispatch(without, batch),
            validation_batch_dispatch(trainer, batch), validation_batch_dispatch(without, batch))


class BatchProbe(lightning.Callback):
    """In the fits without GreenCallback: the per-batch work run once per batch, where it would run (see
    ``_in_fit_probe``) — a fit's first batch's apart (timed at each epoch's first batch, counted once per fit).

    The fetch hooks are timed as warm as they are in a fit: in a fit with the callback its FetchTimer's hooks run at
    every fetch and Lightning's own do not; without it, the reverse. So in odd epochs the fit's own fetches run
    through a FetchTimer (installed as the callback installs it) and the probe times the work (the timer's hooks and
    the dispatch with GreenCallback listed); in even epochs the fetches run through Lightning's hooks and the probe
    times the bare stand-in (Lightning's hooks and the dispatch without it)."""

    def __init__(self) -> None:
        self.train = InFitProbe(*batch_work()[:2])
        first_work, first_bare, self._first_callback = batch_work(first=True)
        self.first = InFitProbe(first_work, first_bare)
        self.validation = InFitProbe(*validation_batch_work())
        train_floor, train_without, validation_floor, validation_without = floor_work()
        self.floor = InFitProbe(train_floor, train_without)
        self.validation_floor = InFitProbe(validation_floor, validation_without)
        self._fetch: FetchTimer | None = None

    def on_train_epoch_start(self, trainer: lightning.Trainer, module: object) -> None:
        if trainer.current_epoch % 2:
            self._fetch = FetchTimer.install(trainer)  # wraps the epoch loop's on_run_start, which runs next

    def on_train_epoch_end(self, trainer: lightning.Trainer, module: object) -> None:
        if self._fetch is not None:
            self._fetch.remove()
            self._fetch = None

    def on_train_batch_end(self, trainer: object, module: object, outputs: object, batch: object, batch_idx: int) -> None:
        if batch_idx == 0:
            self.first()
            self._first_callback._batch_hooks_back()  # untimed: the fit end's (timed in the fits with the callback)
        elif batch_idx % 2:
            self.train.run(work=self._fetch is not None)
        else:  # every other batch: the floor, as cold as the work
            self.floor()

    def on_validation_batch_end(self, trainer: object, module: object, outputs: object, batch: object, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        (self.validation if batch_idx % 2 == 0 else self.validation_floor)()


class EpochEnds(lightning.Callback):
    def __init__(self) -> None:
        self.ends_s: list[float] = []

    def on_train_epoch_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        self.ends_s.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--own-run", action="store_true", help="no active run: the callback starts its own")
    parser.add_argument("--fake-meter", action="store_true", help="a meter whose reads cost nothing")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steady epochs on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target)
    train = DataLoader(TensorDataset(x[:1400], y[:1400]), batch_size=BATCH_SIZE, shuffle=True)
    val = DataLoader(TensorDataset(x[1400:], y[1400:]), batch_size=BATCH_SIZE)
    steps = len(train)

    def timed_fit(with_callback: bool) -> tuple[float, list[float]]:
        ends = EpochEnds()
        meters = [FakeMeter({"cpu:0": 50.0, "ram:0": 5.0})] if args.fake_meter else None
        callbacks = [TimedGreenCallback(meters=meters), ends] if with_callback else [probe, ends]
        trainer = lightning.Trainer(
            max_epochs=args.epochs, callbacks=callbacks, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0,
        )
        run = None if args.own_run else mlflow.start_run()
        start_s = time.perf_counter()
        trainer.fit(Classifier(baseline(), torch.zeros(1, 64)), train, val)
        total_s = time.perf_counter() - start_s
        if run is not None:
            mlflow.end_run()
        return total_s, [b - a for a, b in zip(ends.ends_s, ends.ends_s[1:])]

    probe = BatchProbe()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_GREEN_SPOOL_DIR"] = str(Path(tmp) / "spool")
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/bench.db")
        mlflow.set_experiment("callback-overhead")
        report(
            name="Lightning fit, digits baseline CNN"
            + (", callback's own run" if args.own_run else ", in an active run")
            + (", meter reads free (fake meter)" if args.fake_meter else ", meters selected on this machine"),
            timed_fit=timed_fit, repeats=args.repeats, epochs=args.epochs, steps=steps,
            epoch_hooks=EPOCH_HOOKS, fit_hooks=FIT_HOOKS, per_batch_us=per_call_us(*batch_work()[:2]),
            validation_steps=len(val), per_validation_batch_us=per_call_us(*validation_batch_work()),
            batch_probe=probe.train, validation_probe=probe.validation, first_batch_probe=probe.first,
        )
    print(f"  of the per batch figures, Lightning's dispatch of any callback's batch hooks (a look-up each, none called:"
          f" the floor every callback pays): {probe.floor.cost_us():.2f} µs per batch, {probe.validation_floor.cost_us():.2f} µs"
          f" per validation batch ({probe.floor.samples} and {probe.validation_floor.samples} timed)")


if __name__ == "__main__":
    main()
