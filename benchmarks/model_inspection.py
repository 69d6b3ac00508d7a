"""The Keras model profile's cost: one inspection of the digits-zoo CNN, CPU time.

The callbacks profile the model at a fit's start and again at its end (``green/model_*``), so one
inspection counts twice in the fixed cost per fit (budget ≤ 20 ms, DESIGN.md §6). The baseline CNN of
``examples/keras_digits.py`` is trained for one epoch on scikit-learn's digits, then inspected
``--calls`` times per round; the median and the fastest round are printed.

Usage::

    python benchmarks/model_inspection.py [--backend tensorflow|torch|jax] [--rounds 7] [--calls 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

from _keras_backend import use_backend_from_argv  # noqa: E402

use_backend_from_argv()  # before Keras is imported

import keras  # noqa: E402
from keras_digits import baseline  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from mlflow_green.training.inspectors import inspect_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=os.environ["KERAS_BACKEND"], choices=["tensorflow", "torch", "jax"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    data = load_digits()
    x, y = (data.data / 16.0).astype("float32"), data.target.astype("int64")
    model = baseline()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    profile = inspect_model(model)
    per_call_ms = []
    for _ in range(args.rounds):
        started_s = time.thread_time()
        for _ in range(args.calls):
            inspect_model(model)
        per_call_ms.append((time.thread_time() - started_s) / args.calls * 1000)
    print(f"Keras ({keras.backend.backend()}), digits baseline CNN ({profile.params} parameters, "
          f"{len(model.weights)} variables): one inspection, CPU time over {args.rounds} rounds of {args.calls}")
    print(f"  median {statistics.median(per_call_ms):.3f} ms, fastest round {min(per_call_ms):.3f} ms "
          f"(twice per fit: at its start and its end)")


if __name__ == "__main__":
    main()
