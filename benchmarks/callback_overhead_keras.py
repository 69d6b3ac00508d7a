"""Wall-time overhead of the Keras GreenCallback on a training of about 5 ms per step.

The same model is trained with and without the callback, alternately (A B A B …), each fit
inside an active MLflow run on a sqlite store (so run creation is in neither figure). Figures
from one run of this script:

- A/B overhead (the budget): the wall time from one epoch's end to the next, epochs 2…N,
  median over every interval of every fit, with vs without the callback;
- the direct cost: time spent inside GreenCallback's hooks per epoch (every hook call timed)
  plus its per-step wrapper (timed over 100 000 calls), as a share of the epoch — this one does
  not depend on the machine's noise;
- the fixed cost per fit: GreenCallback's on_train_begin + on_train_end (model inspection,
  meter start, final totals, tags, report.json).

Whole-fit times on a 2-core VM vary by ±20 % between identical runs: run it on an idle machine.

Usage::

    python benchmarks/callback_overhead_keras.py [--repeats 6] [--epochs 5] [--steps 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))

import keras  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
from _overhead import compare, timed_hooks  # noqa: E402

from mlflow_green.integrations.keras import GreenCallback  # noqa: E402

BATCH_SIZE = 256
TimedGreenCallback, HOOK_S = timed_hooks(GreenCallback)
EPOCH_HOOKS = {"on_epoch_begin", "on_epoch_end", "on_test_begin", "on_test_end"}
FIT_HOOKS = {"on_train_begin", "on_train_end"}


def build() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class EpochEnds(keras.callbacks.Callback):
    """Records when each epoch ends (placed after GreenCallback, so its work is inside)."""

    def __init__(self) -> None:
        super().__init__()
        self.ends_s: list[float] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.ends_s.append(time.perf_counter())


def wrapper_us_per_step(calls: int = 100_000) -> float:
    """Microseconds GreenCallback's step wrapper adds per train step."""

    class Model:
        stop_training = False

        def train_function(self, *args: object) -> None:
            return None

    bare = Model().train_function
    start_s = time.perf_counter()
    for _ in range(calls):
        bare(None)
    bare_s = time.perf_counter() - start_s
    callback = GreenCallback()
    callback.set_model(Model())
    callback._wrap("train_function")
    wrapped = callback.model.train_function
    start_s = time.perf_counter()
    for _ in range(calls):
        wrapped(None)
    return max(time.perf_counter() - start_s - bare_s, 0.0) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200, help="steps per epoch")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.random((BATCH_SIZE * args.steps, 64), dtype=np.float32)
    y = rng.integers(0, 10, BATCH_SIZE * args.steps)
    fits = {"green": 0}

    def timed_fit(with_callback: bool) -> tuple[float, list[float]]:
        model = build()
        model.fit(x[: BATCH_SIZE * 4], y[: BATCH_SIZE * 4], batch_size=BATCH_SIZE, epochs=1, verbose=0)  # trace
        ends = EpochEnds()
        callbacks = [TimedGreenCallback(), ends] if with_callback else [ends]
        fits["green"] += with_callback
        with mlflow.start_run():
            start_s = time.perf_counter()
            model.fit(x, y, batch_size=BATCH_SIZE, epochs=args.epochs, callbacks=callbacks, verbose=0)
            total_s = time.perf_counter() - start_s
        return total_s, [b - a for a, b in zip(ends.ends_s, ends.ends_s[1:])]

    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/bench.db")
        mlflow.set_experiment("callback-overhead")
        compare(
            name="Keras fit",
            timed_fit=timed_fit,
            repeats=args.repeats,
            epochs=args.epochs,
            steps=args.steps,
            hooks_ms_per_epoch=lambda: 1000 * sum(t for n, t in HOOK_S.items() if n in EPOCH_HOOKS) / (fits["green"] * args.epochs),
            per_fit_ms=lambda: 1000 * sum(t for n, t in HOOK_S.items() if n in FIT_HOOKS) / fits["green"],
            wrapper_us_per_step=wrapper_us_per_step(),
        )


if __name__ == "__main__":
    main()
