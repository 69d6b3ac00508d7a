"""Where the epochs' thread's CPU goes inside a real Keras fit: per wake-up, against the jobs it does.

The Keras callback hands each epoch's accounting (and the send at the next epoch's start) to its
``mlflow-green-epochs`` thread, which works at most every ``COALESCE_S`` seconds (2 s) on what was
handed over meanwhile (``training/deferred.py``). This fit of the digits baseline CNN (as in
``callback_overhead_keras.py``) times each of that thread's drains by its CPU clock and counts its
jobs, and times each spool append the thread makes, then fits drain CPU = fixed + per job × jobs
(least squares over the drains between the first and the last): whether the thread's cost follows
the accounting's work or the wake-ups themselves (code and data cold after the framework ran).

Usage::

    python benchmarks/epochs_thread_drains.py [--epochs 40] [--backend tensorflow|torch|jax]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

from _keras_backend import use_backend_from_argv  # noqa: E402

use_backend_from_argv()  # before Keras is imported

import mlflow  # noqa: E402
from keras_digits import baseline  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from mlflow_green.integrations.keras import GreenCallback  # noqa: E402
from mlflow_green.record.spool import SpoolFile  # noqa: E402
from mlflow_green.training.deferred import DeferredWork  # noqa: E402

EPOCHS_THREAD = "mlflow-green-epochs"


class TimedDrains(DeferredWork):
    """The session's deferred work, each drain on the epochs' thread timed by that thread's CPU clock."""

    drains: list[tuple[int, float]] = []  # (jobs, CPU µs)

    def _drain(self) -> None:
        if threading.current_thread().name != EPOCHS_THREAD:
            return super()._drain()
        jobs, start_s = len(self._jobs), time.thread_time()
        try:
            return super()._drain()
        finally:
            self.drains.append((jobs, (time.thread_time() - start_s) * 1e6))


class TimedSpool(SpoolFile):
    """Spool appends made on the epochs' thread, timed by its CPU clock."""

    appends_us: list[float] = []

    def append(self, entry: Mapping[str, Any]) -> None:
        if threading.current_thread().name != EPOCHS_THREAD:
            return super().append(entry)
        start_s = time.thread_time()
        try:
            return super().append(entry)
        finally:
            self.appends_us.append((time.thread_time() - start_s) * 1e6)


def fit_line(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares (fixed, per job) of CPU µs against jobs."""
    n = len(points)
    mean_x, mean_y = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    var_x = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var_x if var_x else 0.0
    return mean_y - slope * mean_x, slope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--backend", default=os.environ["KERAS_BACKEND"])
    args = parser.parse_args()
    import mlflow_green.record.keeper as keeper

    keeper.SpoolFile = TimedSpool  # type: ignore[misc]  # the keeper's spool files are timed ones
    data = load_digits()
    x, y = (data.data / 16.0).astype("float32"), data.target.astype("int64")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_GREEN_SPOOL_DIR"] = str(Path(tmp) / "spool")
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/bench.db")
        mlflow.set_experiment("epochs-thread")
        model = baseline()
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x[:1400], y[:1400], batch_size=32, epochs=1, verbose=0)  # trace: not measured
        callback = GreenCallback()
        callback.session._deferred = TimedDrains(EPOCHS_THREAD)
        with mlflow.start_run():
            start_s = time.perf_counter()
            model.fit(x[:1400], y[:1400], validation_data=(x[1400:], y[1400:]), batch_size=32, epochs=args.epochs,
                      verbose=0, callbacks=[callback])
            epoch_ms = (time.perf_counter() - start_s) / args.epochs * 1e3
    drains, appends = TimedDrains.drains, TimedSpool.appends_us
    steady = drains[1:-1]  # the first holds the fit's tags, the last the end's settle
    print(f"Keras ({args.backend}) fit, digits baseline CNN, {args.epochs} epochs of {epoch_ms:.0f} ms; "
          f"the epochs' thread woke {len(drains)} times")
    print("  drains (jobs, CPU µs): " + ", ".join(f"({jobs}, {cpu_us:.0f})" for jobs, cpu_us in drains))
    if len(steady) >= 2:
        fixed_us, per_job_us = fit_line(steady)
        per_epoch_us = sum(cpu for _, cpu in steady) / max(sum(jobs for jobs, _ in steady) / 2, 1)
        print(f"  between the first and the last: {statistics.median(c for _, c in steady):.0f} µs a drain (median), "
              f"{statistics.median(j for j, _ in steady):.0f} jobs (two an epoch); fit: {fixed_us:.0f} µs a drain + "
              f"{per_job_us:.0f} µs a job; {per_epoch_us:.0f} µs an epoch")
    if appends:
        print(f"  spool appends on the thread: {len(appends)}, {statistics.median(appends):.0f} µs CPU each (median)")


if __name__ == "__main__":
    main()
