"""A Keras model (mlflow.keras) and a Lightning module (mlflow.pytorch), really trained on digits,
evaluated by the green evaluator alone and beside MLflow's default (regressor) evaluator."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

torch = pytest.importorskip("torch")  # a framework test: not part of the core suite

from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from mlflow_green.record import schema  # noqa: E402

FAST = {"batch_sizes": [1, 32], "warmup_s": 0.05, "min_duration_s": 0.05}


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype("float32"), data.target.astype("float32")


def frame(x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(x, columns=[f"p{i}" for i in range(x.shape[1])]).assign(label=y)


try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - the lightning extra is part of the test install
    pl = None


if pl is not None:

    class DigitRegressor(pl.LightningModule):
        """Regresses the digit's value from its 64 pixels (one float out, for MLflow's regressor evaluator)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x).squeeze(-1)  # one value per row

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-2)


def evaluate_both_ways(uri: str, data: pd.DataFrame) -> None:
    client = MlflowClient()
    alone = mlflow.models.evaluate(uri, data, targets="label", model_type="regressor", evaluators="green",
                                   evaluator_config=FAST)
    beside = mlflow.models.evaluate(uri, data, targets="label", model_type="regressor",
                                    evaluators=["default", "green"], evaluator_config={"green": FAST})
    alone_run, beside_run = client.get_run(alone.run_id), client.get_run(beside.run_id)
    assert set(schema.INFERENCE_METRICS) <= set(alone_run.data.metrics)
    assert "r2_score" not in alone_run.data.metrics
    assert set(schema.INFERENCE_METRICS) <= set(beside_run.data.metrics)
    assert "r2_score" in beside_run.data.metrics and "mean_squared_error" in beside_run.data.metrics
    assert beside_run.data.tags[schema.TAG_QUALITY_METRIC] == "r2_score"
    for run in (alone_run, beside_run):
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, schema.INFERENCE_LATENCY_MS)}
        # step = batch size; MLflow 3 also records the returned headline figures against the LoggedModel
        # the URI names (models:/m-...), which adds that same value at step 0
        assert set(history) - {0} == {1, 32}
        assert history.get(0, history[32]) == history[32] == run.data.metrics[schema.INFERENCE_LATENCY_MS]
        assert run.data.metrics[schema.INFERENCE_ENERGY_PER_PREDICTION_J] > 0
        assert run.data.tags[schema.TAG_INFERENCE_BATCH_SIZE] == "32"


def test_keras_model_logged_with_mlflow_keras(mlflow_experiment: str) -> None:
    keras = pytest.importorskip("keras")
    x, y = digits()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x[:1400], y[:1400], epochs=1, batch_size=64, verbose=0)
    with mlflow.start_run(run_name="keras-train"):
        info = mlflow.keras.log_model(model, name="model", pip_requirements=["keras", "tensorflow"])
    evaluate_both_ways(info.model_uri, frame(x[1400:1600], y[1400:1600]))


def test_lightning_module_logged_with_mlflow_pytorch(mlflow_experiment: str, tmp_path: Any) -> None:
    if pl is None:
        pytest.fail("lightning is not installed: pip install 'mlflow-green[lightning]'")
    x, y = digits()
    torch.manual_seed(0)
    module = DigitRegressor()
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(module, DataLoader(TensorDataset(torch.tensor(x[:1400]), torch.tensor(y[:1400])), batch_size=64))
    with mlflow.start_run(run_name="lightning-train"):
        info = mlflow.pytorch.log_model(module, name="model", input_example=x[:2],
                                        pip_requirements=["torch", "lightning"])
    evaluate_both_ways(info.model_uri, frame(x[1400:1600], y[1400:1600]))
