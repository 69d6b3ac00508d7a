"""Lightning: resuming into the run a crashed fit left, mid-epoch checkpoints' samples, the fit's setup
measured, and the samples of batches whose inputs are several tensors — each on a real tiny Trainer.

Found by an adversarial round (stop 29): a fit resumed from ``last.ckpt`` into its own run logged a
second point at the steps the crashed fit had logged after the checkpoint; a checkpoint written
inside an epoch held that epoch's energy but not its samples; the LightningModule's ``setup`` was
not measured; ``(dict_of_inputs, y)`` counted the dict's keys as the batch size.
"""

from __future__ import annotations

import json
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
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

J_PER_KWH = 3.6e6


def _green() -> Any:
    return GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})])


class _CrashAt(lightning.Callback):
    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise RuntimeError("node lost")


def _kwargs(tmp_path: Any) -> dict[str, Any]:
    return {**quiet_trainer_kwargs(), "enable_checkpointing": True, "default_root_dir": tmp_path, "max_epochs": 3}


@pytest.mark.parametrize("how", ["start_run", "mlflow_logger"])
def test_resume_into_the_run_that_went_on_after_the_checkpoint_continues_past_its_last_step(
        how: str, mlflow_experiment: str, tmp_path: Any) -> None:
    """The crashed fit logged epochs 0 and 1 (cut short) after ``last.ckpt`` of epoch 0: the resumed fit goes on
    from the run's latest totals and after its last step — one point per step, totals never decreasing."""
    train, val = loaders()
    folder = tmp_path / "ckpt"
    first = _green()
    with mlflow.start_run() as run:
        with pytest.raises(RuntimeError, match="node lost"):
            lightning.Trainer(callbacks=[first, ModelCheckpoint(dirpath=folder, save_last=True), _CrashAt(1, 5)],
                              **_kwargs(tmp_path)).fit(digits_classifier(), train, val)
    run_id = run.info.run_id
    crashed_steps = [m.step for m in MlflowClient().get_metric_history(run_id, schema.ENERGY_KWH)]
    crashed_total = MlflowClient().get_run(run_id).data.metrics[schema.ENERGY_KWH]
    assert crashed_steps == [0, 1]  # epoch 0, and the cut-short epoch 1 (after the checkpoint of epoch 0)

    second = _green()
    if how == "start_run":
        with mlflow.start_run(run_id=run_id):
            lightning.Trainer(callbacks=[second], **_kwargs(tmp_path)).fit(digits_classifier(), train, val,
                                                                           ckpt_path=str(folder / "last.ckpt"))
    else:
        from lightning.pytorch.loggers import MLFlowLogger

        logger = MLFlowLogger(tracking_uri=mlflow.get_tracking_uri(), run_id=run_id)
        kwargs = {**_kwargs(tmp_path), "logger": logger}
        lightning.Trainer(callbacks=[second], **kwargs).fit(digits_classifier(), train, val,
                                                          ckpt_path=str(folder / "last.ckpt"))
    assert second.session.run_id == run_id
    hist = assert_green_invariants(run_id)
    assert [m.step for m in hist[schema.ENERGY_KWH]] == [0, 1, 2, 3]  # epochs 1 and 2 again, after step 1
    energies = [m.value for m in hist[schema.ENERGY_KWH]]
    assert energies[1] == pytest.approx(crashed_total) and energies[2] > crashed_total  # the crashed work stays billed
    assert MlflowClient().get_run(run_id).data.tags.get(schema.TAG_RESUMED_FROM) is None


def test_resume_into_the_same_run_from_its_last_epoch_keeps_the_epoch_steps(mlflow_experiment: str, tmp_path: Any) -> None:
    """The run went no further than the checkpoint (a fit that ended there): its steps and totals go on as before."""
    train, val = loaders()
    folder = tmp_path / "ckpt"
    with mlflow.start_run() as run:
        lightning.Trainer(callbacks=[_green(), ModelCheckpoint(dirpath=folder, save_last=True)],
                          **{**_kwargs(tmp_path), "max_epochs": 2}).fit(digits_classifier(), train, val)
    with mlflow.start_run(run_id=run.info.run_id):
        lightning.Trainer(callbacks=[_green()], **_kwargs(tmp_path)).fit(digits_classifier(), train, val,
                                                                         ckpt_path=str(folder / "last.ckpt"))
    hist = assert_green_invariants(run.info.run_id)
    assert [m.step for m in hist[schema.ENERGY_KWH]] == [0, 1, 2]


@pytest.mark.parametrize(("evaluation", "callback"), [("validate", "new"), ("test", "new"), ("test", "same")])
def test_resume_into_the_same_run_keeps_the_evaluations_logged_after_the_checkpoint(
        evaluation: str, callback: str, mlflow_experiment: str, tmp_path: Any) -> None:
    """A ``trainer.validate`` / ``test`` went into the fit's run after its last checkpoint; a fit resumed from that
    checkpoint into the same run keeps them in its report once — their energy and samples (the checkpoint, written
    before, holds none; the report dropped them while the run's metric still showed them: adversarial round, stop 52;
    the first fix counted them three times when the same callback resumed)."""
    train, val = loaders()
    folder = tmp_path / "ckpt"
    first, model = _green(), digits_classifier()
    trainer = lightning.Trainer(callbacks=[first, ModelCheckpoint(dirpath=folder, save_last=True)],
                                **{**_kwargs(tmp_path), "max_epochs": 1})
    trainer.fit(model, train, val)
    getattr(trainer, evaluation)(model, val, verbose=False)
    run_id = first.session.run_id
    with mlflow.start_run(run_id=run_id):
        lightning.Trainer(callbacks=[first if callback == "same" else _green()], **{**_kwargs(tmp_path), "max_epochs": 2}).fit(
            digits_classifier(), train, val, ckpt_path=str(folder / "last.ckpt"))
    assert_green_invariants(run_id)
    report = json.loads((Path(MlflowClient().download_artifacts(run_id, schema.REPORT_ARTIFACT, str(tmp_path)))).read_text())
    logged_kwh = MlflowClient().get_run(run_id).data.metrics[schema.phase_energy_key(evaluation)]
    assert report["samples"][evaluation] == len(val.dataset)
    assert report["phases"][evaluation]["energy_j"] == pytest.approx(logged_kwh * J_PER_KWH)
    assert report["samples"]["train"] == 2 * len(train.dataset)  # the checkpoint's epoch and the resumed one


def test_a_checkpoint_inside_an_epoch_holds_the_samples_its_energy_trained(mlflow_experiment: str, tmp_path: Any) -> None:
    """Saved after 5 of epoch 0's 22 batches, the checkpoint's state holds those 5 batches' samples (and its energy
    up to then); resumed into a new run, energy per sample is over the samples trained since the resume."""
    train, val = loaders()
    folder = tmp_path / "ckpt"
    first = _green()
    saver = ModelCheckpoint(dirpath=folder, every_n_train_steps=5, save_top_k=-1)
    with pytest.raises(RuntimeError, match="node lost"):
        lightning.Trainer(callbacks=[first, saver, _CrashAt(0, 7)], **_kwargs(tmp_path)).fit(digits_classifier(), train, val)
    state = torch.load(folder / "epoch=0-step=5.ckpt", weights_only=False)["callbacks"]
    green_state = next(v for k, v in state.items() if "GreenCallback" in k)
    assert green_state["samples"] == {"train": 5 * 64}
    assert green_state["total"]["energy_j"] > 0


def _busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_the_modules_setup_is_measured_as_other(mlflow_experiment: str, tmp_path: Any) -> None:
    """Half a second of CPU in the LightningModule's ``setup`` is in the fit's duration and its ``other`` phase."""
    train, val = loaders()
    model = digits_classifier()
    model.setup = lambda stage: _busy(0.5)  # type: ignore[method-assign]
    green = _green()
    started = time.perf_counter()
    lightning.Trainer(callbacks=[green], **{**_kwargs(tmp_path), "max_epochs": 1}).fit(model, train, val)
    wall_s = time.perf_counter() - started
    run = MlflowClient().get_run(green.session.run_id)
    assert_green_invariants(run.info.run_id)
    duration_s = run.data.metrics[schema.DURATION_S]
    assert 0.5 < duration_s <= wall_s
    other_j = run.data.metrics[schema.ENERGY_OTHER_KWH] * J_PER_KWH
    assert other_j >= 100.0 * 0.45  # FakeMeter: 100 W over the half second of setup (at least)


def test_a_setup_that_fails_gets_a_failed_run_and_no_measurement_running(mlflow_experiment: str, tmp_path: Any) -> None:
    """The module's setup fails after ours started measuring: a FAILED run with that energy (it was none: the
    measurement dropped), and nothing left measuring."""
    model = digits_classifier()

    def failing_setup(stage: str) -> None:
        raise ValueError("no data")

    model.setup = failing_setup  # type: ignore[method-assign]
    green = _green()
    train, val = loaders()
    with pytest.raises(ValueError, match="no data"):
        lightning.Trainer(callbacks=[green], **_kwargs(tmp_path)).fit(model, train, val)
    assert green._early is None and (green.session.tracker is None or not green.session.tracker.running)
    runs = MlflowClient().search_runs([mlflow_experiment])
    assert [run.info.status for run in runs] == ["FAILED"] and mlflow.active_run() is None
    assert runs[0].data.metrics[schema.ENERGY_OTHER_KWH] == runs[0].data.metrics[schema.ENERGY_KWH] > 0


class _TwoInputs(Dataset):
    def __init__(self, n: int, form: str) -> None:
        self.x = torch.randn(n, 8)
        self.y = torch.randint(0, 2, (n,))
        self.form = form

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Any:
        a, b = self.x[i, :4], self.x[i, 4:]
        if self.form == "dict":
            return {"a": a, "b": b}, self.y[i]
        if self.form == "list":
            return [a, b], self.y[i]
        return torch.tensor(i), (a, b), self.y[i]  # an index first


def _two_input_model(form: str) -> Any:
    class TwoInputs(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.left, self.right = nn.Linear(4, 2), nn.Linear(4, 2)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            inputs, y = (batch[1], batch[2]) if form == "indexed" else batch
            a, b = (inputs["a"], inputs["b"]) if form == "dict" else inputs
            return nn.functional.cross_entropy(self.left(a) + self.right(b), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return TwoInputs()


@pytest.mark.parametrize("form", ["dict", "list", "indexed"])
def test_batches_of_several_inputs_count_samples_not_inputs(form: str, mlflow_experiment: str, tmp_path: Any) -> None:
    loader = DataLoader(_TwoInputs(32, form), batch_size=4)
    green = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})], inspect_model=False)
    lightning.Trainer(callbacks=[green], **{**_kwargs(tmp_path), "max_epochs": 2}).fit(_two_input_model(form), loader)
    run = MlflowClient().get_run(green.session.run_id)
    assert green.session.samples["train"] == 64
    energy_j = run.data.metrics[schema.ENERGY_KWH] * J_PER_KWH
    assert run.data.metrics[schema.ENERGY_PER_SAMPLE_J] == pytest.approx(energy_j / 64, rel=1e-6)
