"""GreenCallback under Lightning loops that change what a batch, an epoch or a validation is.

Manual optimization with two optimizers (a GAN's loop: two optimizer steps per batch), an iterable
dataset without a length (Lightning does not know the epoch's size), two validation dataloaders, and
``predict(return_predictions=False)`` after a fit. Same checks as the other configuration tests: the
run's status, one point per epoch, the phases adding up, joules per sample over the samples trained,
the last projection equal to the total, ``green/report.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

pytest.importorskip("lightning")

import lightning  # noqa: E402
import torch  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402
from test_lightning_more_configurations import Counter, _check_fit_run, _green, _values  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, IterableDataset  # noqa: E402

from mlflow_green.record import schema  # noqa: E402

TRAIN_BATCHES = 22  # 1 400 digits in batches of 64 (the last of 56)


def test_manual_optimization_with_two_optimizers(mlflow_experiment: str, tmp_path: Path) -> None:
    class TwoOptimizers(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False
            self.features = nn.Linear(64, 16)
            self.head = nn.Linear(16, 10)

        def training_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            first, second = self.optimizers()
            for optimizer in (first, second):  # two steps a batch, as a GAN's generator and discriminator
                loss = nn.functional.cross_entropy(self.head(torch.relu(self.features(x))), y)
                optimizer.zero_grad()
                self.manual_backward(loss)
                optimizer.step()

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_acc", (self.head(torch.relu(self.features(x))).argmax(1) == y).float().mean())

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.features.parameters()), torch.optim.Adam(self.head.parameters())

    train, val = loaders()
    cb, counter = _green(), Counter()
    trainer = lightning.Trainer(max_epochs=3, callbacks=[cb, counter], **quiet_trainer_kwargs())
    trainer.fit(TwoOptimizers(), train, val)
    assert trainer.global_step == 2 * 3 * TRAIN_BATCHES  # Lightning counts each optimizer's step
    hist, report = _check_fit_run(cb.session.run_id, tmp_path, counter)
    assert report["samples"]["train"] == 3 * 1400 and report["samples"]["validation"] == 3 * 397
    energy, projected = _values(hist, schema.ENERGY_KWH), _values(hist, schema.PROJECTED_ENERGY_KWH)
    epochs = _values(hist, schema.EPOCH_ENERGY_KWH)
    # after epoch 1 of 3: one epoch to go, at the epochs' energy (not the optimizer steps' count): epoch 1's
    # growth of the total (its window and the work since epoch 0's end)
    assert projected[1] - energy[1] == pytest.approx(energy[1] - energy[0], rel=1e-6)
    assert projected[1] - energy[1] >= epochs[1] * 0.999


class _Stream(IterableDataset):
    """The digits as a stream: no ``__len__`` (Lightning cannot size the epoch)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __iter__(self) -> Any:
        for start in range(0, len(self.x), 50):
            yield self.x[start:start + 50], self.y[start:start + 50]


def test_an_iterable_dataset_without_a_length_counts_the_batches_seen(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    x, y = train.dataset.tensors
    stream = DataLoader(_Stream(x, y), batch_size=None)  # 28 batches of 50
    cb, counter = _green(), Counter()
    lightning.Trainer(max_epochs=3, callbacks=[cb, counter], **quiet_trainer_kwargs()).fit(digits_classifier(), stream, val)
    assert counter.epochs == [0, 1, 2] and counter.total == 3 * 1400
    hist, report = _check_fit_run(cb.session.run_id, tmp_path, counter)
    assert report["samples"]["train"] == 3 * 1400
    assert hist[schema.FLOP_PER_J][-1].value > 0  # the model's FLOPs over the samples seen


def test_two_validation_dataloaders_count_both(mlflow_experiment: str, tmp_path: Path) -> None:
    class TwoValidations(digits_classifier().__class__):
        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            x, y = batch
            self.log(f"val_acc_{dataloader_idx}", (self(x).argmax(1) == y).float().mean(), add_dataloader_idx=False)

    train, val = loaders()
    half = DataLoader(torch.utils.data.Subset(val.dataset, range(200)), batch_size=64)
    cb, counter = _green(), Counter()
    lightning.Trainer(max_epochs=2, callbacks=[cb, counter], **quiet_trainer_kwargs()).fit(TwoValidations(), train, [val, half])
    assert counter.validation == 2 * (397 + 200)
    hist, report = _check_fit_run(cb.session.run_id, tmp_path, counter)
    assert report["samples"]["validation"] == 2 * (397 + 200)
    assert all(m.value > 0 for m in hist[schema.ENERGY_VALIDATION_KWH])


def test_predict_without_returning_predictions_after_a_fit(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    cb, counter = _green(), Counter()
    trainer = lightning.Trainer(max_epochs=2, callbacks=[cb, counter], **quiet_trainer_kwargs())
    model = digits_classifier()
    trainer.fit(model, train, val)
    assert trainer.predict(model, val, return_predictions=False) is None
    _, report = _check_fit_run(cb.session.run_id, tmp_path, counter)
    assert report["samples"]["predict"] == 397
    assert MlflowClient().get_run(cb.session.run_id).data.metrics[schema.ENERGY_PREDICT_KWH] > 0
