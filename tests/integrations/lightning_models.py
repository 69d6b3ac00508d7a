"""Tiny Lightning modules and loaders on sklearn's digits, shared by the Lightning tests and the
DDP script (importable by spawned ranks)."""

from __future__ import annotations

import importlib
import time
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def lightning_module(package: str = "lightning.pytorch") -> Any:
    return importlib.import_module(package)


def loaders(batch_size: int = 64) -> tuple[DataLoader, DataLoader]:
    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target)
    train = DataLoader(TensorDataset(x[:1400], y[:1400]), batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(x[1400:], y[1400:]), batch_size=128)
    return train, val


def digits_classifier(package: str = "lightning.pytorch", *, fail_at_epoch: int | None = None, hidden: int = 32) -> Any:
    pl = lightning_module(package)

    class DigitsClassifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
            self.example_input_array = torch.zeros(1, 64)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if fail_at_epoch is not None and self.current_epoch == fail_at_epoch and batch_idx == 3:
                raise RuntimeError("loss exploded")
            x, y = batch
            loss = nn.functional.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_acc", (self(x).argmax(1) == y).float().mean(), sync_dist=True)

        def test_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("test_acc", (self(x).argmax(1) == y).float().mean())

        def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return self(batch[0]).argmax(1)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    return DigitsClassifier()


def slow_digits_classifier(*, step_s: float = 0.0, first_validation_batch_s: float = 0.0, sanity_batch_s: float = 0.0) -> Any:
    """A small digits classifier (no example input) whose steps take time: each training step ``step_s``,
    the first batch of each real validation ``first_validation_batch_s``, each sanity-check batch ``sanity_batch_s``."""
    pl = lightning_module()

    class SlowDigits(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            time.sleep(step_s)
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            if self.trainer.sanity_checking:
                time.sleep(sanity_batch_s)
            elif batch_idx == 0:
                time.sleep(first_validation_batch_s)
            x, y = batch
            self.log("val_acc", (self(x).argmax(1) == y).float().mean())

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return SlowDigits()


def quiet_trainer_kwargs() -> dict[str, Any]:
    return {
        "accelerator": "cpu",
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "enable_checkpointing": False,
    }
