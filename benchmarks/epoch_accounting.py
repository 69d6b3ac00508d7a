"""The CPU an epoch's accounting costs the callbacks' background thread, without a framework beside it.

Each epoch of a fit hands its accounting (the phase split, the running totals, the projection, the
metrics and their spool write) and the previous epoch's send to the session's ``mlflow-green-epochs``
thread. In a real fit that thread runs while the framework computes, so its CPU time per epoch is
noisy (other work on the machine, caches shared with the framework): see
``callback_overhead_*.py`` for those figures. Here the session's epochs are driven directly, with
a short sleep standing in for the training, and the thread's own CPU clock is read between epochs:
the same work (on that thread, or on the caller's when it settles the work first), measured to a
few microseconds, to compare one version of the accounting with another.

Each epoch: ``begin_epoch``, a validation phase, ``end_epoch``, then the next ``begin_epoch`` (the
accounting runs after the next epoch began, as in a fit), then the session settles and the thread's
CPU clock is read. Everything it writes (sqlite store, spool) is in a temporary folder.

Usage::

    python benchmarks/epoch_accounting.py [--epochs 400] [--fake-meter]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import threading
import time

import mlflow

from mlflow_green import EnergyTracker
from mlflow_green.testing import FakeMeter
from mlflow_green.training.session import TrainingSession

EPOCHS_THREAD = "mlflow-green-epochs"
LOGS = {"loss": 0.5, "accuracy": 0.9, "val_loss": 0.4, "val_accuracy": 0.91}


def _thread_cpu_s(name: str) -> float:
    for thread in threading.enumerate():
        if thread.name == name and thread.ident is not None:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--fake-meter", action="store_true", help="a scripted CPU and RAM meter instead of this machine's")
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_GREEN_SPOOL_DIR"] = os.path.join(tmp, "spool")
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/accounting.db")
        mlflow.set_experiment("epoch-accounting")
        meters = [FakeMeter({"cpu:0": 40.0, "ram:0": 5.0})] if args.fake_meter else None
        session = TrainingSession(framework="benchmark", tracker=EnergyTracker(meters=meters))
        per_epoch_us: list[float] = []
        with mlflow.start_run():
            session.bind_run()
            session.begin_fit(planned_epochs=args.warmup + args.epochs + 1)
            session.begin_epoch(0)
            for epoch in range(args.warmup + args.epochs):
                before_s = _thread_cpu_s(EPOCHS_THREAD)  # the thread is idle: the last epoch's work settled
                time.sleep(0.002)  # the epoch's training
                session.begin_phase("validation")
                time.sleep(0.0005)
                session.end_phase("validation", samples=397, ends_epoch=True)
                session.end_epoch(epoch, logs=LOGS, train_samples=1400)
                session.begin_epoch(epoch + 1)
                settle_s = time.thread_time()
                session.settle()  # what the thread has not begun yet, this thread does
                settle_s = time.thread_time() - settle_s
                if epoch >= args.warmup:
                    per_epoch_us.append(1e6 * (_thread_cpu_s(EPOCHS_THREAD) - before_s + settle_s))
            session.end_fit()
        meters_tag = "a fake CPU and RAM meter" if args.fake_meter else "the meters selected on this machine"
        print(f"epoch accounting on the {EPOCHS_THREAD} thread, {args.epochs} epochs, {meters_tag}:")
        print(f"  CPU per epoch: median {statistics.median(per_epoch_us):.0f} µs, mean {statistics.fmean(per_epoch_us):.0f} µs,"
              f" 90th percentile {statistics.quantiles(per_epoch_us, n=10)[-1]:.0f} µs")


if __name__ == "__main__":
    main()
