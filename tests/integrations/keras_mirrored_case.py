"""A GreenCallback fit under ``tf.distribute.MirroredStrategy`` over two logical CPUs, and the same
fit without a strategy (run as a script: TensorFlow's devices are fixed before its first use).

Usage: ``python keras_mirrored_case.py OUT_DIR`` writes ``OUT_DIR/result.json``: the replicas, and
each run's ``green/model_*`` metrics and ``green.compression`` tag.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras  # noqa: E402
import mlflow  # noqa: E402

from mlflow_green.integrations.keras import GreenCallback  # noqa: E402


def build() -> keras.Model:
    """A two-layer model whose first kernel is a quarter zeros (whole zero rows: structured sparsity)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
    rows = np.arange(8)[:, None] % 4 == 0
    model.layers[0].kernel.assign(np.where(rows, 0.0, 1.0).repeat(16, axis=1).astype("float32"))
    return model


def main(out: Path) -> None:
    os.environ["MLFLOW_GREEN_SPOOL_DIR"] = str(out / "spool")
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x = np.random.RandomState(0).rand(64, 8).astype("float32")
    y = np.arange(64) % 3
    result: dict[str, object] = {"replicas": strategy.num_replicas_in_sync}
    for name, scope in (("plain", None), ("mirrored", strategy)):
        if scope is None:
            model = build()
        else:
            with scope.scope():
                model = build()
        model.compile(keras.optimizers.SGD(learning_rate=0.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        with mlflow.start_run() as run:  # learning rate 0: the weights stay as built
            model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[GreenCallback()])
        data = mlflow.get_run(run.info.run_id).data
        result[name] = {
            "metrics": {k: v for k, v in data.metrics.items() if k.startswith("green/model_")},
            "compression": data.tags.get("green.compression"),
        }
    (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
