"""A PyTorch Lightning zoo on sklearn's digits, mirroring the Keras one, each run logged to MLflow.

- ``baseline``: a small CNN;
- ``smaller``: depthwise-separable convolutions and global pooling (MobileNet-style);
- ``pruned``: the baseline with 80 % of its weights pruned (``torch.nn.utils.prune``) before training;
- ``int8``: the baseline trained in float, then dynamically quantized to int8 for inference;
- ``tied``: an MLP whose hidden block is one Linear layer applied three times (weight sharing).

Each is trained with ``GreenCallback()`` and tested with it (test energy per sample), then logged
with ``mlflow.pytorch.log_model`` and evaluated in the same run by the ``green`` MLflow evaluator:
joules per prediction, latency and throughput at batch sizes 1 and 32, steady state (warm-up
excluded), the module called in inference mode. Models take the 64 pixels flat (reshaped in
``forward``), as a served model gets a table row; pruning is made permanent before serving.
Offline: the data ships with scikit-learn. Usage::

    python examples/lightning_digits.py        # logs to sqlite:///mlflow.db, experiment green-digits-lightning
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings

import lightning
import mlflow
import pandas as pd
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlflow_green.integrations.lightning import GreenCallback

EXPERIMENT = "green-digits-lightning"
EPOCHS = 8
INFERENCE = {"batch_sizes": [1, 32], "warmup_s": 0.5, "min_duration_s": 2.0, "predict_with": "raw_model"}
"""The green evaluator's settings (the largest batch size is the headline); ``raw_model``: the module itself."""
PICKLED = (
    {"serialization_format": "pickle"}  # MLflow 3's default (torch.export) cannot trace quantized modules
    if "serialization_format" in inspect.signature(mlflow.pytorch.log_model).parameters
    else {}
)


class Classifier(lightning.LightningModule):
    def __init__(self, net: nn.Module, example: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.example_input_array = example

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(-1, 1, 8, 8))  # 64 flat pixels (a served table row) or 1x8x8 images

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_accuracy", (self(x).argmax(1) == y).float().mean())

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("test_accuracy", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=3e-3)


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp, self.block, self.out = nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x.flatten(1)))
        for _ in range(3):  # the same weights applied three times
            h = torch.relu(self.block(h))
        return self.out(h)


def baseline() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def smaller() -> nn.Module:
    def separable(c_in: int, c_out: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in), nn.Conv2d(c_in, c_out, 1), nn.ReLU())

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), separable(16, 32), nn.MaxPool2d(2), separable(32, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


def run(name: str, net: nn.Module, loaders: tuple[DataLoader, DataLoader, DataLoader], test_frame: pd.DataFrame) -> None:
    train, val, test = loaders
    model = Classifier(net, torch.zeros(1, 1, 8, 8))
    green = GreenCallback()
    trainer = lightning.Trainer(
        max_epochs=EPOCHS, callbacks=[green], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    with mlflow.start_run(run_name=name):
        mlflow.log_params({"variant": name, "epochs": EPOCHS})
        trainer.fit(model, train, val)
        if name == "int8":  # post-training dynamic quantization of the Linear layers, for inference
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.net = torch.ao.quantization.quantize_dynamic(model.net, {nn.Linear}, dtype=torch.qint8)
            green.log_model(model)
        result = trainer.test(model, test, verbose=False)[0]
        mlflow.log_metric("test_accuracy", result["test_accuracy"])
        for module in model.modules():  # serve the pruned weights themselves, not weight_orig * mask per call
            if hasattr(module, "weight_mask"):
                torch.nn.utils.prune.remove(module, "weight")
        info = mlflow.pytorch.log_model(model, name="model", pip_requirements=["torch", "lightning"], **PICKLED)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # serving one request stream: on a small shared CPU, more threads spin and stall
        try:
            evaluation = mlflow.models.evaluate(info.model_uri, test_frame, targets="label", model_type="classifier",
                                                evaluators="green", evaluator_config=INFERENCE)
        finally:
            torch.set_num_threads(threads)
    profile = green.session.profile
    j = evaluation.metrics["green/inference_energy_per_prediction_j"]
    print(f"  {name:<9} test_accuracy={result['test_accuracy']:.3f}  params={profile.params if profile else '?':>7}"
          f"  compression={profile.compression_tag() if profile else '?'}"
          f"  inference={j * 1000:.3g} mJ/prediction at batch {max(INFERENCE['batch_sizes'])}")


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    mlflow.set_experiment(EXPERIMENT)
    lightning.seed_everything(0, verbose=False)
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(digits.target)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(x_train, y_train, test_size=0.2, random_state=0)
    loaders = (
        DataLoader(TensorDataset(x_train, y_train), batch_size=32, shuffle=True),
        DataLoader(TensorDataset(x_val, y_val), batch_size=128),
        DataLoader(TensorDataset(x_test, y_test), batch_size=128),
    )
    flat = x_test.reshape(len(x_test), -1).numpy()
    test_frame = pd.DataFrame(flat, columns=[f"pixel_{i}" for i in range(flat.shape[1])]).assign(label=y_test.numpy())
    print(f"Training the Lightning zoo on digits ({EPOCHS} epochs each), experiment {EXPERIMENT!r}:")
    run("baseline", baseline(), loaders, test_frame)
    run("smaller", smaller(), loaders, test_frame)
    pruned = baseline()
    for module in pruned.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            torch.nn.utils.prune.l1_unstructured(module, "weight", amount=0.8)
    run("pruned", pruned, loaders, test_frame)
    run("int8", baseline(), loaders, test_frame)
    run("tied", Tied(), loaders, test_frame)


if __name__ == "__main__":
    main()
