"""A Keras zoo on sklearn's digits: the energy-saving techniques users try, each logged to MLflow.

- ``baseline``: a small CNN;
- ``smaller``: a MobileNet-style CNN (depthwise-separable convolutions, global pooling);
- ``pruned``: the baseline with gradual magnitude pruning to 80 % sparsity during training;
- ``int8``: the baseline, quantized to int8 after training (``model.quantize("int8")``);
- ``shared``: an MLP whose hidden block is one Dense layer applied three times (weight sharing).

Each is trained with ``GreenCallback()`` and tested with it (test energy per sample), then logged
with ``mlflow.keras.log_model`` and evaluated in the same run by the ``green`` MLflow evaluator:
joules per prediction, latency and throughput at batch sizes 1 and 32, steady state (warm-up
excluded). Models take the 64 pixels flat (a ``Reshape`` layer first), as a served model gets a
table row. Offline: the data ships with scikit-learn. Usage::

    python examples/keras_digits.py             # logs to sqlite:///mlflow.db, experiment green-digits-keras
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from mlflow_green.integrations.keras import GreenCallback  # noqa: E402

EXPERIMENT = "green-digits-keras"
EPOCHS = 8
BATCH_SIZE = 32
INFERENCE = {"batch_sizes": [1, 32], "warmup_s": 0.5, "min_duration_s": 2.0, "predict_with": "raw_model"}
"""The green evaluator's settings: the largest batch size is the headline (the latest value MLflow shows);
``raw_model`` calls the Keras model itself (``predict_on_batch``), not the pyfunc wrapper, whose
``model.predict`` sets up a dataset pipeline per call that would swamp the model's own cost."""


def baseline() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Reshape((8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="baseline",
    )


def smaller() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Reshape((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.SeparableConv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.SeparableConv2D(64, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="smaller",
    )


def shared() -> keras.Model:
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(64, activation="relu")(inputs)
    block = keras.layers.Dense(64, activation="relu", name="shared_block")
    for _ in range(3):  # the same weights, applied three times (ALBERT-style sharing)
        hidden = block(hidden)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden), name="shared")


class MagnitudePruning(keras.callbacks.Callback):
    """Gradual magnitude pruning of every kernel, up to ``final_sparsity`` by the last epoch."""

    def __init__(self, final_sparsity: float, epochs: int) -> None:
        super().__init__()
        self.final_sparsity, self.epochs = final_sparsity, epochs
        self.masks: list[tuple[keras.Variable, np.ndarray]] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        sparsity = self.final_sparsity * min(1.0, (epoch + 1) / max(self.epochs - 1, 1))
        self.masks = []
        for layer in self.model.layers:
            kernel = getattr(layer, "kernel", None)
            if kernel is None:
                continue
            values = keras.ops.convert_to_numpy(kernel)
            threshold = np.quantile(np.abs(values), sparsity)
            mask = (np.abs(values) > threshold).astype(values.dtype)
            self.masks.append((kernel, mask))
        self._apply()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._apply()

    def _apply(self) -> None:
        for kernel, mask in self.masks:
            kernel.assign(keras.ops.convert_to_numpy(kernel) * mask)


def train(name: str, model: keras.Model, data: tuple[np.ndarray, ...], extra: list | None = None) -> keras.Model:
    x_train, x_test, y_train, y_test = data
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    green = GreenCallback()
    with mlflow.start_run(run_name=name):
        mlflow.log_params({"variant": name, "epochs": EPOCHS, "batch_size": BATCH_SIZE})
        model.fit(
            x_train, y_train, validation_split=0.2, epochs=EPOCHS, batch_size=BATCH_SIZE,
            callbacks=[*(extra or []), green], verbose=0,
        )
        if name == "int8":
            with warnings.catch_warnings():  # "Conv2D does not have a quantize method": Dense only
                warnings.simplefilter("ignore", UserWarning)
                model.quantize("int8")  # post-training quantization of the Dense layers
            green.log_model(model)
        _, accuracy = model.evaluate(x_test, y_test, batch_size=128, callbacks=[green], verbose=0)
        mlflow.log_metric("test_accuracy", accuracy)
        info = mlflow.keras.log_model(model, name="model", pip_requirements=["keras", "tensorflow"])
        evaluation = mlflow.models.evaluate(
            info.model_uri, test_frame(x_test, y_test), targets="label", model_type="classifier",
            evaluators="green", evaluator_config=INFERENCE,
        )
    profile = green.session.profile
    compression = profile.compression_tag() if profile else "?"
    j = evaluation.metrics["green/inference_energy_per_prediction_j"]
    print(f"  {name:<9} test_accuracy={accuracy:.3f}  params={profile.params if profile else '?':>7}  compression={compression}"
          f"  inference={j * 1000:.3g} mJ/prediction at batch {max(INFERENCE['batch_sizes'])}")
    return model


def test_frame(x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """The test set as MLflow's evaluate wants it: one row of 64 pixels per image, and the label."""
    return pd.DataFrame(x, columns=[f"pixel_{i}" for i in range(x.shape[1])]).assign(label=y)


def main() -> None:
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    mlflow.set_experiment(EXPERIMENT)
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")  # 64 pixels per row
    data = train_test_split(x, digits.target, test_size=0.25, random_state=0)
    keras.utils.set_random_seed(0)
    print(f"Training the Keras zoo on digits ({EPOCHS} epochs each), experiment {EXPERIMENT!r}:")
    train("baseline", baseline(), data)
    train("smaller", smaller(), data)
    train("pruned", baseline(), data, extra=[MagnitudePruning(0.8, EPOCHS)])
    train("int8", baseline(), data)
    train("shared", shared(), data)


if __name__ == "__main__":
    main()
