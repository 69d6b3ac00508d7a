"""A tuner callback's own checkpoint inside a fit is not a resume.

``BatchSizeFinder`` (and ``LearningRateFinder``) save a checkpoint in their ``on_fit_start``, run their trials, and
restore it — callbacks' states included — before GreenCallback's ``on_fit_start``. The callback took that restore
for a resume: a second fit on the same Trainer got ``green.resumed_from`` the first fit's run, and a fit resumed
from a user's checkpoint (``ckpt_path``) lost what it resumed, the tuner's restore putting the state before it back.
Real Trainers on the digits, a constant 100 W fake meter.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

pytest.importorskip("lightning")

import lightning  # noqa: E402
import torch  # noqa: E402
from green_invariants import assert_green_invariants  # noqa: E402
from lightning.pytorch.callbacks import BatchSizeFinder, LearningRateFinder, ModelCheckpoint  # noqa: E402
from lightning_models import loaders, quiet_trainer_kwargs  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

TRAIN, VAL = loaders()


class SizedDigits(lightning.LightningModule):
    """The digits classifier with its own loaders at ``self.batch_size`` (what BatchSizeFinder scales)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        self.batch_size, self.lr = 64, 0.1
        self.example_input_array = torch.zeros(1, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return nn.functional.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", nn.functional.cross_entropy(self(batch[0]), batch[1]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TRAIN.dataset, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return VAL


def _finder(kind: str = "batch size") -> lightning.Callback:
    if kind == "learning rate":
        return LearningRateFinder(num_training_steps=5)
    return BatchSizeFinder(steps_per_trial=1, max_trials=2, init_val=32)


class Epochs(lightning.Callback):
    """The epochs Lightning trained (not the finder's trials, which end inside their epoch)."""

    def __init__(self) -> None:
        self.trained: list[int] = []

    def on_train_epoch_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        self.trained.append(trainer.current_epoch)


@pytest.mark.parametrize("finder", ["batch size", "learning rate"])
def test_a_second_fit_on_the_same_trainer_with_a_finder_starts_a_run_of_its_own(finder: str, mlflow_experiment: str, tmp_path: Path) -> None:
    green = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})])
    trainer = lightning.Trainer(max_epochs=1, callbacks=[_finder(finder), green], default_root_dir=tmp_path, **quiet_trainer_kwargs())
    model = SizedDigits()
    trainer.fit(model)
    first = green.session.run_id
    trainer.fit_loop.max_epochs = 2  # one more epoch, in a fit of its own
    started_s = time.perf_counter()
    trainer.fit(model)
    second_fit_s = time.perf_counter() - started_s
    second = green.session.run_id
    assert second != first
    client = MlflowClient()
    run = client.get_run(second)
    assert schema.TAG_RESUMED_FROM not in run.data.tags, "the tuner's restore taken for a resume of the first fit"
    assert_green_invariants(second)
    assert [m.step for m in client.get_metric_history(second, schema.ENERGY_KWH)] == [1]
    first_j, second_j = (client.get_run(r).data.metrics[schema.ENERGY_KWH] * 3.6e6 for r in (first, second))
    assert second_j == pytest.approx(100.0 * run.data.metrics[schema.DURATION_S], rel=0.05)
    assert second_j < 100.0 * second_fit_s + 0.5 * first_j, "started at zero: about 100 W over the second fit's time"
    assert run.data.metrics[schema.ENERGY_PER_SAMPLE_J] * 1400 == pytest.approx(second_j, rel=1e-6)


def test_a_fit_resumed_from_a_checkpoint_with_a_batch_size_finder_says_what_it_resumed(mlflow_experiment: str, tmp_path: Path) -> None:
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})])
    trainer = lightning.Trainer(max_epochs=1, callbacks=[first, checkpoint], **{**quiet_trainer_kwargs(), "enable_checkpointing": True})
    trainer.fit(SizedDigits())
    green = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})])  # a new process, resuming into a new run
    epochs = Epochs()
    resumed = lightning.Trainer(max_epochs=2, callbacks=[_finder(), green, epochs], default_root_dir=tmp_path, **quiet_trainer_kwargs())
    resumed.fit(SizedDigits(), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    run = MlflowClient().get_run(green.session.run_id)
    assert run.info.run_id != first.session.run_id and mlflow.active_run() is None
    assert run.data.tags.get(schema.TAG_RESUMED_FROM) == first.session.run_id
    # (the finder's restore with a ckpt_path makes Lightning train from epoch 0 again: its run says what was trained)
    assert [m.step for m in MlflowClient().get_metric_history(run.info.run_id, schema.ENERGY_KWH)] == epochs.trained
    assert_green_invariants(run.info.run_id)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt], ids=["error", "ctrl_c"])
def test_a_resumed_fit_whose_finder_trial_fails_is_a_resume_and_the_next_fit_is_not(
        error: type[BaseException], mlflow_experiment: str, tmp_path: Path) -> None:
    """``fit(ckpt_path=…)`` with a ``BatchSizeFinder`` whose trial fails: Lightning calls no ``teardown``, and the
    checkpoint's state stayed with the callback — the next plain fit on the same Trainer (a fresh model) was tagged
    ``green.resumed_from`` the checkpoint's run, while the failed fit's run, the one that did resume it, was not."""
    first = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})])
    lightning.Trainer(max_epochs=1, callbacks=[first, ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)],
                      default_root_dir=tmp_path, **{**quiet_trainer_kwargs(), "enable_checkpointing": True}).fit(SizedDigits())
    armed = [True]

    class FailsInTheTrial(SizedDigits):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if armed[0] and green not in self.trainer.callbacks:  # in the finder's trial (the trial's own callbacks)
                raise error("bad batch")
            return super().training_step(batch, batch_idx)

    green, epochs = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})]), Epochs()
    trainer = lightning.Trainer(max_epochs=2, callbacks=[_finder(), green, epochs], default_root_dir=tmp_path, **quiet_trainer_kwargs())
    with pytest.raises(SystemExit if error is KeyboardInterrupt else error):  # Lightning exits on Ctrl-C
        trainer.fit(FailsInTheTrial(), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    failed = MlflowClient().get_run(green.session.run_id)
    assert failed.info.status == ("KILLED" if error is KeyboardInterrupt else "FAILED")
    assert failed.data.tags.get(schema.TAG_RESUMED_FROM) == first.session.run_id
    armed[0] = False
    trainer.fit(SizedDigits())  # a fresh model, no checkpoint
    run = MlflowClient().get_run(green.session.run_id)
    assert run.info.run_id not in (failed.info.run_id, first.session.run_id) and run.info.status == "FINISHED"
    assert schema.TAG_RESUMED_FROM not in run.data.tags, "the failed fit's checkpoint taken for this fit's"
    assert [m.step for m in MlflowClient().get_metric_history(run.info.run_id, schema.ENERGY_KWH)] == epochs.trained
    assert_green_invariants(run.info.run_id)
