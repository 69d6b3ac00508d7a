"""GreenCallback in the Lightning configurations that broke 0.1: real tiny Trainers, real sqlite stores."""

from __future__ import annotations

import copy
import json
import os
import pickle
import signal
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
from lightning.pytorch.demos import LightningTransformer  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs, slow_digits_classifier  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

CONSTANT_100_W = {"cpu:0": 100.0}  # energy proportional to time: phase splits can be checked


def _report(run_id: str, tmp_path: Path) -> dict[str, Any]:
    path = MlflowClient().download_artifacts(run_id, schema.REPORT_ARTIFACT, str(tmp_path / run_id))
    return json.loads(Path(path).read_text())


def _history(run_id: str, key: str) -> list:
    return sorted(MlflowClient().get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))


def _slow_validation() -> Any:
    """Training steps of 10 ms (22 batches: ~0.2 s an epoch at least); each validation's first batch 0.3 s."""
    return slow_digits_classifier(step_s=0.01, first_validation_batch_s=0.3)


def test_mid_epoch_validation_is_validation_not_data_wait(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    cb = GreenCallback(meters=[FakeMeter(CONSTANT_100_W)])
    trainer = lightning.Trainer(max_epochs=1, val_check_interval=0.5, num_sanity_val_steps=0, callbacks=[cb],
                                **quiet_trainer_kwargs())
    trainer.fit(_slow_validation(), train, val)
    metrics = MlflowClient().get_run(cb.session.run_id).data.metrics
    # two validations of >= 0.3 s in the epoch; the training steps take >= 0.2 s and wait on no input
    assert metrics[schema.ENERGY_VALIDATION_KWH] * 3.6e6 >= 100.0 * 0.6 * 0.95
    assert metrics[schema.ENERGY_TRAIN_KWH] * 3.6e6 >= 100.0 * 0.2 * 0.9
    assert metrics[schema.ENERGY_DATA_KWH] < 0.5 * metrics[schema.ENERGY_TRAIN_KWH]
    assert_green_invariants(cb.session.run_id)
    phases = _report(cb.session.run_id, tmp_path)["phases"]
    assert phases["data"]["devices"][0]["basis"] == "counter, apportioned by time share"
    assert phases["train"]["devices"][0]["basis"] == "counter, apportioned by time share"


def test_max_steps_without_max_epochs_projects_from_steps(mlflow_experiment: str) -> None:
    train, val = loaders()  # 22 batches an epoch
    cb = GreenCallback(meters=[FakeMeter(CONSTANT_100_W)])
    trainer = lightning.Trainer(max_steps=55, callbacks=[cb], **quiet_trainer_kwargs())
    trainer.fit(digits_classifier(), train, val)
    run_id = cb.session.run_id
    projected = _history(run_id, schema.PROJECTED_ENERGY_KWH)
    energy = _history(run_id, schema.ENERGY_KWH)
    assert [m.step for m in energy] == [0, 1, 2]
    # after epoch 0 (22 of 55 steps): 33 steps to go at epoch 0's energy per step (not the energy so far)
    epoch_energy = _history(run_id, schema.EPOCH_ENERGY_KWH)
    assert projected[0].value == pytest.approx(energy[0].value + epoch_energy[0].value * 33 / 22, rel=1e-6)
    assert_green_invariants(run_id)


class _TwiceCalled(lightning.LightningModule):
    """One Linear used twice in forward (weight sharing); no example_input_array."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(64, 64)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.shared(torch.relu(self.shared(x)))))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_without_example_input_the_profile_of_the_first_batch_holds_to_the_end(mlflow_experiment: str, tmp_path: Path) -> None:
    train, _ = loaders()
    cb = GreenCallback()
    lightning.Trainer(max_epochs=2, limit_train_batches=3, callbacks=[cb], **quiet_trainer_kwargs()).fit(_TwiceCalled(), train)
    run_id = cb.session.run_id
    used = 2 * (64 * 64 + 64) + 64 * 10 + 10
    params = _history(run_id, schema.MODEL_PARAMS)
    assert [(m.step, m.value) for m in params] == [(0, used)]
    flops = _history(run_id, schema.MODEL_FLOPS_PER_SAMPLE)
    assert [(m.step, m.value) for m in flops] == [(0, 2 * (2 * 64 * 64 + 64) + 2 * 64 * 10 + 10)]
    report = _report(run_id, tmp_path)
    assert report["model"]["params"] == used
    assert report["model"]["flops_per_sample"] == flops[0].value
    assert MlflowClient().get_run(run_id).data.metrics[schema.FLOP_PER_J] > 0
    assert report["samples"]["train"] == 2 * 3 * 64, "the profile did not take a batch from training"


class _TinyTransformer(LightningTransformer):
    """Lightning's demo Transformer (forward(inputs, target)) on random tokens: no download."""

    def prepare_data(self) -> None:
        pass


def test_a_forward_taking_two_arguments_gets_flops(mlflow_experiment: str) -> None:
    torch.manual_seed(0)
    tokens = torch.randint(0, 50, (16, 8))
    loader = DataLoader(TensorDataset(tokens, torch.roll(tokens, -1, dims=1)), batch_size=8)
    cb = GreenCallback()
    lightning.Trainer(max_epochs=1, limit_train_batches=2, callbacks=[cb], **quiet_trainer_kwargs()).fit(
        _TinyTransformer(vocab_size=50), loader
    )
    metrics = MlflowClient().get_run(cb.session.run_id).data.metrics
    assert metrics[schema.MODEL_FLOPS_PER_SAMPLE] > 1e5
    assert metrics[schema.FLOP_PER_J] > 0


class _FailingPredict(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if batch_idx == 2:
            raise RuntimeError("bad shard")
        return self(batch[0])


def test_an_exception_in_predict_ends_the_run_failed_and_is_predict_energy(mlflow_experiment: str) -> None:
    _, val = loaders()
    cb = GreenCallback()
    with pytest.raises(RuntimeError, match="bad shard"):
        lightning.Trainer(callbacks=[cb], **quiet_trainer_kwargs()).predict(_FailingPredict(), val)
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FAILED"
    assert schema.ENERGY_TEST_KWH not in run.data.metrics
    assert run.data.metrics[schema.ENERGY_PREDICT_KWH] > 0
    assert mlflow.active_run() is None


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_an_evaluation_alone_makes_a_complete_run(stage: str, mlflow_experiment: str, tmp_path: Path) -> None:
    _, val = loaders()
    cb = GreenCallback()
    model = digits_classifier()
    getattr(lightning.Trainer(callbacks=[cb], **quiet_trainer_kwargs()), stage)(model, val)
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics[schema.phase_energy_key(stage)] > 0
    assert run.data.metrics[schema.phase_energy_per_sample_key(stage)] > 0
    for tag in (schema.TAG_METERS, schema.TAG_ESTIMATED, schema.TAG_VERSION, schema.TAG_REGION):
        assert run.data.tags.get(tag), tag
    report = _report(run.info.run_id, tmp_path)
    assert report["status"] == "FINISHED" and report["phases"][stage]["energy_j"] > 0
    assert report["samples"][stage] == 397


def test_resume_into_a_new_run_starts_at_zero_and_names_the_earlier_run(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    first = GreenCallback()
    trainer1 = lightning.Trainer(max_epochs=2, callbacks=[first], **quiet_trainer_kwargs())
    trainer1.fit(digits_classifier(), train, val)
    checkpoint = tmp_path / "two-epochs.ckpt"
    trainer1.save_checkpoint(checkpoint)

    second = GreenCallback()
    trainer2 = lightning.Trainer(max_epochs=3, callbacks=[second], **quiet_trainer_kwargs())
    trainer2.fit(digits_classifier(), train, val, ckpt_path=str(checkpoint))
    assert second.session.run_id != first.session.run_id
    run = MlflowClient().get_run(second.session.run_id)
    assert run.data.tags[schema.TAG_RESUMED_FROM] == first.session.run_id
    assert run.data.metrics[schema.ENERGY_KWH] * 3.6e6 == pytest.approx(second.session.fit_total.energy_j, rel=1e-9)
    assert [m.step for m in _history(run.info.run_id, schema.EPOCH_ENERGY_KWH)] == [2]
    assert _report(run.info.run_id, tmp_path)["samples"]["train"] == 1400
    assert_green_invariants(run.info.run_id)


def test_keyboard_interrupt_ends_the_fit_killed_and_the_users_run_stays_open(mlflow_experiment: str) -> None:
    class Interrupted(lightning.Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            raise KeyboardInterrupt

    train, val = loaders()
    cb = GreenCallback()
    with mlflow.start_run() as users:
        with pytest.raises(SystemExit):  # Lightning turns Ctrl-C into a graceful exit(1)
            lightning.Trainer(max_epochs=3, callbacks=[cb, Interrupted()], **quiet_trainer_kwargs()).fit(
                digits_classifier(), train, val
            )
        assert mlflow.active_run().info.run_id == users.info.run_id
        assert MlflowClient().get_run(users.info.run_id).info.status == "RUNNING"
    assert cb.session.run_id == users.info.run_id
    assert_green_invariants(users.info.run_id)


def test_a_sigterm_while_the_fits_end_is_measured_waits_for_the_totals_and_the_report(mlflow_experiment: str, tmp_path: Path) -> None:
    """When a ddp_spawn rank fails, torch terminates the others, and Lightning's SIGTERM handler raises
    there (its broadcast finds the failed rank gone). Arriving while our fit's end was being measured,
    its error cut the totals short (the run ended without green/report.json, 1 run in 9), or, raised
    inside the final meter read, was taken for a meter failure and swallowed. Now a SIGTERM then waits
    until the run is complete, and the handler's error is raised after it."""
    fit_ended: list[bool] = []
    sent: list[bool] = []

    def power_w(elapsed_s: float) -> float:  # the final read (tracker.stop) is where the signal comes
        if fit_ended and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        return 100.0

    class FitEnds(lightning.Callback):
        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            fit_ended.append(True)

    handled: list[int] = []

    def broadcast_fails(signum: int, frame: object) -> None:
        handled.append(signum)
        raise RuntimeError("Connection closed by peer")

    train, val = loaders()
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": power_w})])
    previous = signal.signal(signal.SIGTERM, broadcast_fails)
    try:
        with pytest.raises(RuntimeError, match="Connection closed by peer"):
            lightning.Trainer(max_epochs=2, callbacks=[FitEnds(), cb], **quiet_trainer_kwargs()).fit(digits_classifier(), train, val)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sent and handled == [signal.SIGTERM]
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FINISHED"  # the training had finished; the signal came during the last read
    report = _report(run.info.run_id, tmp_path)
    assert report["status"] == "FINISHED" and len(report["epochs"]) == 2
    assert_green_invariants(run.info.run_id)


def test_an_epoch_cut_short_counts_the_samples_it_trained(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    cb = GreenCallback()
    with pytest.raises(RuntimeError, match="loss exploded"):  # the 4th step of the 2nd epoch raises
        lightning.Trainer(max_epochs=3, callbacks=[cb], **quiet_trainer_kwargs()).fit(digits_classifier(fail_at_epoch=1), train, val)
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FAILED"
    samples = 1400 + 3 * 64  # a whole epoch, then the 3 batches the second one trained
    assert _report(run.info.run_id, tmp_path)["samples"]["train"] == samples
    metrics = run.data.metrics
    assert metrics[schema.ENERGY_PER_SAMPLE_J] == pytest.approx(metrics[schema.ENERGY_KWH] * 3.6e6 / samples, rel=1e-6)
    # the cut-short epoch's training is billed to train, not left to other (steps: epoch 0, then the final totals)
    client = MlflowClient()
    train, other = ([m.value for m in client.get_metric_history(run.info.run_id, key)]
                    for key in (schema.ENERGY_TRAIN_KWH, schema.ENERGY_OTHER_KWH))
    assert len(train) == len(other) == 2 and train[1] > train[0]
    # its 3 batches: about 3/22 of epoch 0's training (not compared with `other`, which holds the failure's handling and
    # the fit's end — on a loaded machine more than 3 short batches: stop 52's run had 0.042 J against 0.033 J)
    assert train[1] - train[0] > 0.3 * 3 / 22 * train[0], (train, other)
    assert_green_invariants(run.info.run_id)


def test_the_callback_pickles_and_deep_copies_with_its_state(mlflow_experiment: str) -> None:
    train, val = loaders()
    cb = GreenCallback(region="FR", max_energy_kwh=1.0)
    trainer = lightning.Trainer(max_epochs=1, callbacks=[cb], **quiet_trainer_kwargs())
    trainer.fit(digits_classifier(), train, val)
    for copied in (copy.deepcopy(cb), pickle.loads(pickle.dumps(cb))):
        assert type(copied) is GreenCallback
        assert copied.session.run_id == cb.session.run_id
        assert copied.session.carried.energy_j == cb.session.carried.energy_j
        assert copied.session.config.carbon.region == "FRA" and copied.session.budget.max_energy_kwh == 1.0
    copy.deepcopy(trainer)  # the `copy.deepcopy(trainer)` pattern (tuners, sweeps) works with the callback in it


def test_the_epoch_ends_at_the_reading_of_a_validation_after_its_last_batch_only(
    mlflow_experiment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An epoch whose last validation ran after its last batch ends at that validation's reading (one meter
    read fewer); after a mid-epoch one (val_check_interval) training follows, and the epoch's end is read.
    EPOCH_GAP_S is widened to 50 ms: on a loaded machine Lightning's own bookkeeping between the validation's
    end and the epoch's end took longer than 5 ms once (then the epoch's end is read, rightly, and the
    count below is off by one)."""
    from mlflow_green.training import session_windows

    monkeypatch.setattr(session_windows, "EPOCH_GAP_S", 0.05)
    meter = FakeMeter(CONSTANT_100_W)
    seen: list[tuple[str, int]] = []

    class Reads(lightning.Callback):  # after GreenCallback: sees the reads its hooks made
        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking:
                seen.append(("val_start", meter.reads))

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking:
                seen.append(("val_end", meter.reads))

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            seen.append(("epoch_end", meter.reads))

    train, val = loaders()
    cb = GreenCallback(meters=[meter])
    trainer = lightning.Trainer(max_epochs=2, val_check_interval=0.5, num_sanity_val_steps=0, callbacks=[cb, Reads()],
                                **quiet_trainer_kwargs())
    trainer.fit(_slow_validation(), train, val)
    names = [name for name, _ in seen]
    assert names == ["val_start", "val_end", "val_start", "val_end", "epoch_end"] * 2, names
    deltas = [b - a for (_, a), (_, b) in zip(seen, seen[1:])]
    for epoch in range(2):
        mid_end, epoch_val_end, epoch_end = deltas[5 * epoch], deltas[5 * epoch + 2], deltas[5 * epoch + 3]
        assert (mid_end, epoch_val_end, epoch_end) == (1, 1, 0), deltas  # the epoch ends at the last one's read
    metrics = MlflowClient().get_run(cb.session.run_id).data.metrics
    assert metrics[schema.ENERGY_VALIDATION_KWH] * 3.6e6 >= 100.0 * 4 * 0.3 * 0.95  # four slow validations
    assert_green_invariants(cb.session.run_id)


def test_a_slow_validation_end_hook_after_ours_is_other_not_validation(mlflow_experiment: str) -> None:
    """A ModelCheckpoint saving in on_validation_end runs after GreenCallback's: that time is not validation
    (found by an adversarial probe: the epoch's end reading had closed the validation)."""

    class SlowValidationEnd(lightning.Callback):
        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking:
                time.sleep(0.2)

    train, val = loaders()
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0, "ram:0": 0.0})])
    trainer = lightning.Trainer(max_epochs=2, num_sanity_val_steps=0, callbacks=[cb, SlowValidationEnd()],
                                **quiet_trainer_kwargs())
    trainer.fit(digits_classifier(), train, val)
    metrics = MlflowClient().get_run(cb.session.run_id).data.metrics
    validation_j, other_j = (metrics[k] * 3.6e6 for k in (schema.ENERGY_VALIDATION_KWH, schema.ENERGY_OTHER_KWH))
    assert other_j >= 100.0 * 2 * 0.2 * 0.95, (validation_j, other_j)  # the two sleeps, at 100 W
    assert validation_j < 100.0 * 2 * 0.2 * 0.9, (validation_j, other_j)  # billed the sleeps, it would be more
    assert_green_invariants(cb.session.run_id)
