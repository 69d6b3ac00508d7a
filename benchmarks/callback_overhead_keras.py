"""Wall-time overhead of the Keras GreenCallback on a training of about 5 ms per step.

The same model is trained with and without the callback, alternately (A B A B …), each fit
inside an active MLflow run on a sqlite store (so run creation is in neither figure).

Two figures, from one run of this script:

- steady-state overhead per epoch (the budget): the wall time from one epoch's end to the
  next, epochs 2…N, median over every interval of every fit, with vs without the callback;
- the fixed cost per fit: model inspection, meter start, final totals, tags and report.json,
  i.e. the difference of whole-fit medians minus the steady-state part.

- the direct cost: time spent inside GreenCallback's hooks per epoch (measured by timing
  every hook call) plus its per-step wrapper (timed over 100 000 calls), as a share of the
  epoch. This one does not depend on the machine's noise.

Whole-fit times on a 2-core VM vary by ±20 % between identical runs; run this on an idle
machine, and read the A/B figure together with the direct cost.

Usage::

    python benchmarks/callback_overhead_keras.py [--repeats 5] [--epochs 3] [--steps 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402

from mlflow_green.integrations.keras import GreenCallback  # noqa: E402

BUDGET_PERCENT = 1.0
BATCH_SIZE = 256


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


class TimedGreenCallback(GreenCallback):
    """GreenCallback whose every hook call is timed (the hooks' own cost, not the training's)."""

    hook_s: dict[str, float] = {}

    def __getattribute__(self, name: str):  # noqa: ANN204
        attribute = super().__getattribute__(name)
        if not name.startswith("on_") or not callable(attribute):
            return attribute

        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            start_s = time.perf_counter()
            try:
                return attribute(*args, **kwargs)
            finally:
                TimedGreenCallback.hook_s[name] = TimedGreenCallback.hook_s.get(name, 0.0) + time.perf_counter() - start_s

        return timed


def wrapper_cost_s(calls: int = 100_000) -> float:
    """Seconds GreenCallback's step wrapper adds per train step (timing, data-wait bookkeeping)."""

    class Model:
        stop_training = False

        def train_function(self, *args: object) -> None:
            return None

    callback = GreenCallback()
    callback.set_model(Model())
    bare = Model().train_function
    start_s = time.perf_counter()
    for _ in range(calls):
        bare(None)
    bare_s = time.perf_counter() - start_s
    callback._wrap("train_function")
    wrapped = callback.model.train_function
    start_s = time.perf_counter()
    for _ in range(calls):
        wrapped(None)
    return max(time.perf_counter() - start_s - bare_s, 0.0) / calls


def timed_fit(x: np.ndarray, y: np.ndarray, epochs: int, with_callback: bool) -> tuple[float, list[float]]:
    model = build()
    model.fit(x[: BATCH_SIZE * 4], y[: BATCH_SIZE * 4], batch_size=BATCH_SIZE, epochs=1, verbose=0)  # trace once
    ends = EpochEnds()
    callbacks = [TimedGreenCallback(), ends] if with_callback else [ends]
    with mlflow.start_run():
        start_s = time.perf_counter()
        model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, callbacks=callbacks, verbose=0)
        total_s = time.perf_counter() - start_s
    return total_s, [b - a for a, b in zip(ends.ends_s, ends.ends_s[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200, help="steps per epoch")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.random((BATCH_SIZE * args.steps, 64), dtype=np.float32)
    y = rng.integers(0, 10, BATCH_SIZE * args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/bench.db")
        mlflow.set_experiment("callback-overhead")
        timed_fit(x, y, 2, True)  # warm-up: first store access, first meter probe, TF kernels
        TimedGreenCallback.hook_s = {}
        plain: list[tuple[float, list[float]]] = []
        green: list[tuple[float, list[float]]] = []
        for _ in range(args.repeats):
            plain.append(timed_fit(x, y, args.epochs, False))
            green.append(timed_fit(x, y, args.epochs, True))
    plain_epoch_s = statistics.median(i for _, intervals in plain for i in intervals)
    green_epoch_s = statistics.median(i for _, intervals in green for i in intervals)
    plain_fit_s = statistics.median(t for t, _ in plain)
    green_fit_s = statistics.median(t for t, _ in green)
    step_ms = plain_epoch_s / args.steps * 1000
    overhead = 100.0 * (green_epoch_s - plain_epoch_s) / plain_epoch_s
    fixed_ms = 1000 * ((green_fit_s - plain_fit_s) - args.epochs * (green_epoch_s - plain_epoch_s))
    print(f"Keras fit: {args.epochs} epochs × {args.steps} steps of {step_ms:.2f} ms, {args.repeats} fits each, A/B interleaved")
    print(f"  epoch, steady state (median of {sum(len(i) for _, i in plain)} intervals)")
    print(f"    without callback   {plain_epoch_s * 1000:8.1f} ms")
    print(f"    with GreenCallback {green_epoch_s * 1000:8.1f} ms")
    print(f"    overhead           {overhead:+8.2f} %   (budget ≤ {BUDGET_PERCENT} %)")
    print(f"  whole fit (median): {plain_fit_s:.3f} s without, {green_fit_s:.3f} s with;"
          f" fixed cost per fit ≈ {fixed_ms:.0f} ms (inspection, start, totals, report)")
    fits = args.repeats
    per_epoch_hooks_s = sum(
        t for name, t in TimedGreenCallback.hook_s.items() if name in {"on_epoch_begin", "on_epoch_end", "on_test_begin", "on_test_end"}
    ) / (fits * args.epochs)
    per_fit_hooks_s = sum(
        t for name, t in TimedGreenCallback.hook_s.items() if name in {"on_train_begin", "on_train_end"}
    ) / fits
    per_step_s = wrapper_cost_s()
    direct = 100.0 * (per_epoch_hooks_s + per_step_s * args.steps) / plain_epoch_s
    print(f"  direct cost: hooks {per_epoch_hooks_s * 1000:.2f} ms/epoch + wrapper {per_step_s * 1e6:.2f} µs/step"
          f" = {direct:.3f} % of an epoch; begin+end of fit {per_fit_hooks_s * 1000:.0f} ms per fit")
    print("  verdict:", "within budget" if max(overhead, direct) <= BUDGET_PERCENT else "OVER BUDGET")


if __name__ == "__main__":
    main()
