"""Keras fits reading a PyDataset with worker processes (``use_multiprocessing=True``), in a fresh process
(``tests/integrations/test_keras_pydataset_workers.py`` runs it with a time limit: a hang fails the test, not the
suite). Usage: ``python pydataset_workers_case.py TRACKING_URI FITS``; prints a JSON line.

Keras's pool stops each epoch's workers with SIGTERM, sometimes right after forking one; with GreenCallback
holding SIGTERM in the training process, a worker that received it before its at-fork handlers ran lost it (and
lived on: its pool waited on it) or took itself for the training and ended the parent's run.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time

import keras
import mlflow
import numpy as np
from sklearn.datasets import load_digits

from mlflow_green.integrations.keras import GreenCallback

EPOCHS, BATCHES, BATCH = 3, 10, 32


class Batches(keras.utils.PyDataset):
    def __init__(self, x: np.ndarray, y: np.ndarray, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.x, self.y = x, y

    def __len__(self) -> int:
        return BATCHES

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x[i * BATCH:(i + 1) * BATCH], self.y[i * BATCH:(i + 1) * BATCH]


def main() -> None:
    mlflow.set_tracking_uri(sys.argv[1])
    mlflow.set_experiment("pydataset-workers")
    data = load_digits()
    x, y = (data.data / 16.0).astype("float32"), data.target
    runs = []
    for _ in range(int(sys.argv[2])):
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        callback = GreenCallback()
        model.fit(Batches(x, y, workers=2, use_multiprocessing=True), validation_data=(x[1400:], y[1400:]),
                  epochs=EPOCHS, verbose=0, callbacks=[callback])
        runs.append(callback.session.run_id)
    deadline_s = time.monotonic() + 10.0  # stopped workers are reaped by their pools' threads
    while multiprocessing.active_children() and time.monotonic() < deadline_s:
        time.sleep(0.1)
    print(json.dumps({"runs": runs, "workers_left": [p.name for p in multiprocessing.active_children()]}))


if __name__ == "__main__":
    main()
