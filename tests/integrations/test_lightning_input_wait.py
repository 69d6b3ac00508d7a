"""A Lightning fit's input wait is the time its training loop spent fetching batches, and nothing else.

Other callbacks' batch hooks, a checkpoint saved every step, the module's own epoch-start hook ran
between two batches and were billed as input wait (``green/energy_data_kwh`` 92 J of a 20 ms sleep per
batch in a later callback, against ~0 of fetching in-memory tensors).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from mlflow import MlflowClient

pytest.importorskip("lightning")

import lightning  # noqa: E402
import torch  # noqa: E402
from green_invariants import assert_green_invariants  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

WATTS = 100.0  # a constant draw: joules = 100 x seconds, so each phase can be checked against known sleeps
NOT_INPUT_WAIT = 0.25
"""The most of a sleep outside the fetches that ``data`` may hold: the fetches themselves are real input wait (in-memory
batches: ~2 J here on a quiet machine, 17-32 J seen under the full suite's load), the bug this guards against put the
whole sleep there."""


class SlowBatchEnd(lightning.Callback):
    """Listed after ours: 40 ms of work at every batch's end (a metrics push, a checkpoint)."""

    def on_train_batch_end(self, *args: Any) -> None:
        time.sleep(0.04)


class SlowDigits(Dataset):
    """The digits, 1 ms to read each sample (decoding, augmenting)."""

    def __init__(self) -> None:
        self.loader, _ = loaders()

    def __len__(self) -> int:
        return 320

    def __getitem__(self, index: int) -> Any:
        time.sleep(0.001)
        return self.loader.dataset[index]


def _phases_j(run_id: str) -> dict[str, float]:
    metrics = MlflowClient().get_run(run_id).data.metrics
    return {phase: metrics[f"green/energy_{phase}_kwh"] * 3.6e6 for phase in ("train", "validation", "data", "other")}


def test_other_callbacks_work_between_batches_is_training_not_input_wait(mlflow_experiment: str) -> None:
    train, _ = loaders()  # 22 in-memory batches an epoch
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": WATTS})])
    trainer = lightning.Trainer(max_epochs=2, callbacks=[cb, SlowBatchEnd()], **quiet_trainer_kwargs())
    trainer.fit(digits_classifier(), train)
    phases = _phases_j(cb.session.run_id)
    slept_j = WATTS * 44 * 0.04  # 176 J
    assert phases["data"] < NOT_INPUT_WAIT * slept_j, phases  # was 92 J of 88 J slept (20 ms a batch)
    assert phases["train"] >= 0.95 * slept_j, phases
    assert_green_invariants(cb.session.run_id)


def test_the_modules_epoch_start_is_training_not_input_wait(mlflow_experiment: str) -> None:
    class SlowEpochStart(type(digits_classifier())):  # type: ignore[misc]
        def on_train_epoch_start(self) -> None:
            time.sleep(1.0)

    train, _ = loaders()
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": WATTS})])
    lightning.Trainer(max_epochs=2, callbacks=[cb], **quiet_trainer_kwargs()).fit(SlowEpochStart(), train)
    phases = _phases_j(cb.session.run_id)
    waits_s = [epoch["data_wait_s"] for epoch in cb.session.epochs]  # which epoch held it, if it fails
    assert phases["data"] < NOT_INPUT_WAIT * WATTS * 2.0, (phases, waits_s)  # was 60 J of 60 J slept (0.3 s an epoch)
    assert phases["train"] >= 0.95 * WATTS * 2.0, phases
    assert_green_invariants(cb.session.run_id)


def test_reading_slow_input_is_input_wait(mlflow_experiment: str) -> None:
    train = DataLoader(SlowDigits(), batch_size=32)  # 10 batches, >= 32 ms each to read
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": WATTS})])
    lightning.Trainer(max_epochs=2, callbacks=[cb], **quiet_trainer_kwargs()).fit(digits_classifier(), train)
    phases = _phases_j(cb.session.run_id)
    read_j = WATTS * 2 * 320 * 0.001  # 64 J at least
    assert phases["data"] >= 0.95 * read_j, phases
    assert phases["data"] < 2.0 * read_j, phases
    assert_green_invariants(cb.session.run_id)


def test_a_fit_failing_inside_an_epoch_keeps_that_epochs_input_wait(mlflow_experiment: str) -> None:
    """The fetch timer's input wait is handed to the session at the epoch's end, not at every batch: an epoch cut
    short by an error (at its 8th of 10 batches, after 8 slow reads) bills its reads to data all the same."""
    class FailsInTheSecondEpoch(type(digits_classifier())):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if self.current_epoch == 1 and batch_idx == 7:
                raise RuntimeError("a bad batch")
            return super().training_step(batch, batch_idx)

    train = DataLoader(SlowDigits(), batch_size=32)  # 10 batches, >= 32 ms each to read
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": WATTS})])
    with pytest.raises(RuntimeError, match="a bad batch"):
        lightning.Trainer(max_epochs=2, callbacks=[cb], **quiet_trainer_kwargs()).fit(FailsInTheSecondEpoch(), train)
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FAILED"
    phases = _phases_j(cb.session.run_id)
    read_j = WATTS * (320 + 8 * 32) * 0.001  # the first epoch's 320 reads and the cut-short epoch's 256: 57.6 J at least
    assert phases["data"] >= 0.95 * read_j, phases
    assert phases["data"] < 2.0 * read_j, phases
    assert_green_invariants(cb.session.run_id)


def test_a_dict_batch_with_more_keys_than_forward_takes_still_gets_flops(mlflow_experiment: str) -> None:
    train, _ = loaders()

    class DictBatches(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(train.dataset)

        def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
            x, y = train.dataset[index]
            return {"x": x, "y": y}

    class Module(type(digits_classifier())):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.example_input_array = None  # the profile is taken from the first batch

        def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(self(batch["x"]), batch["y"])

    cb = GreenCallback(meters=[FakeMeter({"cpu:0": WATTS})])
    lightning.Trainer(max_epochs=1, callbacks=[cb], **quiet_trainer_kwargs()).fit(
        Module(), DataLoader(DictBatches(), batch_size=64))
    metrics = MlflowClient().get_run(cb.session.run_id).data.metrics
    assert metrics[schema.MODEL_FLOPS_PER_SAMPLE] > 0  # forward(x=..., y=...) raised: no FLOPs, no FLOP/J
    assert metrics[schema.FLOP_PER_J] > 0
