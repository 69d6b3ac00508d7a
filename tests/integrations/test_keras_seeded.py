"""A seeded Keras fit trains the same with GreenCallback as without it: the run the callback starts inside the fit
draws its name from a generator of its own, not from Python's global ``random`` (which Keras shuffles a
``PyDataset``'s batches with; MLflow's store drew the name from it, shifting every shuffle after)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mlflow_green.integrations.keras import GreenCallback  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402


class Batches(keras.utils.PyDataset):
    """15 batches of digits-like data, read in the order Keras shuffles them (recorded)."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(1)
        self.x, self.y = rng.random((15 * 16, 8), dtype=np.float32), rng.integers(0, 3, 15 * 16)
        self.order: list[int] = []

    def __len__(self) -> int:
        return 15

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        self.order.append(i)
        return self.x[i * 16:(i + 1) * 16], self.y[i * 16:(i + 1) * 16]


def _fit(callbacks: list[keras.callbacks.Callback]) -> tuple[list[int], list[float]]:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    data = Batches()
    history = model.fit(data, epochs=3, verbose=0, callbacks=callbacks)
    return data.order, history.history["loss"]


def test_a_seeded_fit_shuffles_and_trains_the_same_with_the_callback(mlflow_experiment: str) -> None:
    order, losses = _fit([])
    green = GreenCallback(meters=[FakeMeter({"cpu:0": 45.0, "ram:0": 5.0})])  # no name: the run is named for it
    green_order, green_losses = _fit([green])
    assert green.session.run_id is not None
    assert green_order == order
    assert green_losses == pytest.approx(losses, rel=1e-6)
