"""GreenCallback in Lightning Trainer configurations not covered elsewhere: what a user sees in MLflow.

Each test runs a real tiny Trainer on the digits (22 training batches of 64 an epoch, the last one of 56;
4 validation batches, 397 samples) with a constant 100 W fake meter, and checks the run: its status, one
``green/energy_kwh`` point per epoch (step = epoch), the phases summing to the total, joules per sample
over the samples actually trained (counted by a callback of the test), the last projection equal to the
final energy, and ``green/report.json``.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

pytest.importorskip("lightning")

import lightning  # noqa: E402
import torch  # noqa: E402
from green_invariants import assert_green_invariants  # noqa: E402
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, Timer  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs, slow_digits_classifier  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

CONSTANT_100_W = {"cpu:0": 100.0}  # energy proportional to time: phase splits can be checked
J_PER_KWH = 3.6e6


def _green() -> Any:
    return GreenCallback(meters=[FakeMeter(CONSTANT_100_W)])


def _report(run_id: str, tmp_path: Path) -> dict[str, Any]:
    path = MlflowClient().download_artifacts(run_id, schema.REPORT_ARTIFACT, str(tmp_path / f"report-{run_id}"))
    return json.loads(Path(path).read_text())


def _history(run_id: str, key: str) -> list:
    return sorted(MlflowClient().get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))


def _runs(experiment_id: str) -> list:
    return MlflowClient().search_runs([experiment_id], order_by=["attributes.start_time ASC"])


class Counter(lightning.Callback):
    """What Lightning actually did: training samples per epoch (batches that finished), validation samples
    outside the sanity check, optimizer steps."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.train: dict[int, int] = defaultdict(int)
        self.validation = 0
        self.sanity = 0

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.train[trainer.current_epoch] += len(batch[0])

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking:
            self.sanity += len(batch[0])
        else:
            self.validation += len(batch[0])

    @property
    def epochs(self) -> list[int]:
        return sorted(self.train)

    @property
    def total(self) -> int:
        return sum(self.train.values())


def _check_fit_run(run_id: str, tmp_path: Path, counter: Counter, *, status: str = "FINISHED",
                   projection: bool = True) -> tuple[dict[str, list], dict[str, Any]]:
    """The checks every fit's run must pass; returns (histories, report)."""
    run = MlflowClient().get_run(run_id)
    assert run.info.status == status
    hist = assert_green_invariants(run_id)  # one point per step, phases sum, non-decreasing, projection = total
    energy = hist[schema.ENERGY_KWH]
    assert [m.step for m in energy] == counter.epochs, "step = epoch, one point per epoch trained"
    if projection:
        assert schema.PROJECTED_ENERGY_KWH in hist, "no projection"
        assert hist[schema.PROJECTED_ENERGY_KWH][-1].value == pytest.approx(energy[-1].value, rel=1e-9)
    # joules per sample at each step: the energy so far over the samples trained so far
    so_far, expected = 0, {}
    for epoch in counter.epochs:
        so_far += counter.train[epoch]
        expected[epoch] = so_far
    per_sample = {m.step: m.value for m in hist[schema.ENERGY_PER_SAMPLE_J]}
    for m in energy:
        assert per_sample[m.step] == pytest.approx(m.value * J_PER_KWH / expected[m.step], rel=1e-6), m.step
    report = _report(run_id, tmp_path)
    assert report["status"] == status
    assert [e["epoch"] for e in report["epochs"]] == counter.epochs
    assert report["samples"]["train"] == counter.total
    assert report["samples"].get("validation", 0) == counter.validation
    assert report["totals"]["energy_kwh"] == pytest.approx(energy[-1].value, rel=1e-6)
    return hist, report


def _values(hist: dict[str, list], key: str) -> dict[int, float]:
    return {m.step: m.value for m in hist[key]}


# -- 1. check_val_every_n_epoch ----------------------------------------------------------------------
def test_check_val_every_n_epoch_validates_only_the_epochs_it_runs(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    cb, counter = _green(), Counter()
    trainer = lightning.Trainer(max_epochs=3, check_val_every_n_epoch=2, callbacks=[cb, counter], **quiet_trainer_kwargs())
    trainer.fit(digits_classifier(), train, val)
    assert counter.validation == 397  # one validation, after epoch 1
    hist, report = _check_fit_run(cb.session.run_id, tmp_path, counter)
    validation = _values(hist, schema.ENERGY_VALIDATION_KWH)
    assert validation[0] == 0.0 and validation[1] > 0.0 and validation[2] == validation[1]
    assert [e["phases_j"].get("validation", 0.0) > 0 for e in report["epochs"]] == [False, True, False]


# -- 2. the sanity check ------------------------------------------------------------------------------
@pytest.mark.parametrize("sanity_steps", [2, 0])
def test_the_sanity_check_is_other_not_validation(sanity_steps: int, mlflow_experiment: str, tmp_path: Path) -> None:
    """docs/schema.md and docs/lightning.md: "Lightning's sanity check is `other`"."""
    train, val = loaders()
    cb, counter = _green(), Counter()
    trainer = lightning.Trainer(max_epochs=2, num_sanity_val_steps=sanity_steps, callbacks=[cb, counter],
                                **quiet_trainer_kwargs())
    trainer.fit(slow_digits_classifier(sanity_batch_s=0.25), train, val)
    assert counter.sanity == 128 * sanity_steps and counter.validation == 2 * 397
    hist, report = _check_fit_run(cb.session.run_id, tmp_path, counter)
    validation_j = _values(hist, schema.ENERGY_VALIDATION_KWH)[0] * J_PER_KWH
    other_j = _values(hist, schema.ENERGY_OTHER_KWH)[0] * J_PER_KWH
    assert validation_j < 100.0 * 0.25, "the sanity check's sleeps were billed as epoch 0's validation"
    if sanity_steps:
        assert other_j >= 100.0 * 0.25 * sanity_steps * 0.95, "the sanity check is not in other"
    assert report["epochs"][0]["phases_j"]["validation"] < 100.0 * 0.25


def test_a_fit_failing_in_its_sanity_check_logs_its_models_parameters(mlflow_experiment: str, tmp_path: Path) -> None:
    """Without ``example_input_array`` the model is profiled on the first training batch: a fit that failed in
    its sanity check, before any, logged no ``green/model_params`` (the parameters need no batch)."""
    train, val = loaders()
    cb = _green()
    model = digits_classifier()
    model.example_input_array = None

    def failing_validation_step(batch: Any, batch_idx: int) -> None:
        raise ValueError("bad validation")

    model.validation_step = failing_validation_step
    trainer = lightning.Trainer(max_epochs=2, callbacks=[cb], **quiet_trainer_kwargs())
    with pytest.raises(ValueError, match="bad validation"):
        trainer.fit(model, train, val)
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FAILED"
    assert run.data.metrics[schema.MODEL_PARAMS] == sum(p.numel() for p in model.parameters())
    assert schema.MODEL_FLOPS_PER_SAMPLE not in run.data.metrics  # no example input: FLOPs unknown, not 0


# -- 3. gradient accumulation and max_steps ------------------------------------------------------------
def test_accumulate_grad_batches_projects_from_optimizer_steps(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()  # 22 batches an epoch: 6 optimizer steps with accumulate_grad_batches=4
    cb, counter = _green(), Counter()
    trainer = lightning.Trainer(max_steps=15, accumulate_grad_batches=4, callbacks=[cb, counter], **quiet_trainer_kwargs())
    trainer.fit(digits_classifier(), train, val)
    assert trainer.global_step == 15
    assert [counter.train[e] for e in counter.epochs] == [1400, 1400, 12 * 64]  # the 15th step is the 12th batch
    hist, report = _check_fit_run(cb.session.run_id, tmp_path, counter)
    assert [e["steps"] for e in report["epochs"]] == [6, 6, 3]
    energy, projected = _values(hist, schema.ENERGY_KWH), _values(hist, schema.PROJECTED_ENERGY_KWH)
    epoch_energy = _values(hist, schema.EPOCH_ENERGY_KWH)
    # after epoch 0: 6 of 15 optimizer steps done, 9 left at epoch 0's energy per optimizer step
    assert projected[0] == pytest.approx(energy[0] + epoch_energy[0] * 9 / 6, rel=1e-6)
    # after epoch 1: 12 done, 3 left
    assert projected[1] > energy[1]
    assert projected[1] - energy[1] < energy[1] - energy[0]  # 3 steps left is half an epoch, not 22 batches' worth


# -- 4. fast_dev_run and overfit_batches ---------------------------------------------------------------
def test_fast_dev_run(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    cb, counter = _green(), Counter()
    lightning.Trainer(fast_dev_run=True, callbacks=[cb, counter], **quiet_trainer_kwargs()).fit(digits_classifier(), train, val)
    assert counter.train == {0: 64} and counter.validation == 128
    assert len(_runs(mlflow_experiment)) == 1
    _check_fit_run(cb.session.run_id, tmp_path, counter)


def test_overfit_batches(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    cb, counter = _green(), Counter()
    lightning.Trainer(max_epochs=2, overfit_batches=2, callbacks=[cb, counter], **quiet_trainer_kwargs()).fit(
        digits_classifier(), train, val
    )
    assert counter.train == {0: 128, 1: 128}
    _check_fit_run(cb.session.run_id, tmp_path, counter)


# -- 5. limit_*_batches -----------------------------------------------------------------------------
def test_limited_batches_count_the_samples_seen(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    cb, counter = _green(), Counter()
    lightning.Trainer(max_epochs=2, limit_train_batches=0.25, limit_val_batches=0.5, callbacks=[cb, counter],
                      **quiet_trainer_kwargs()).fit(digits_classifier(), train, val)
    assert counter.train == {0: 5 * 64, 1: 5 * 64} and counter.validation == 2 * 2 * 128
    _check_fit_run(cb.session.run_id, tmp_path, counter)


# -- 6. max_time ------------------------------------------------------------------------------------
def test_max_time_stops_mid_epoch_with_the_samples_of_the_cut_epoch(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()

    class Slow(lightning.Callback):
        """At the sixth batch of the second epoch, waits until max_time is up: the Timer stops the fit at that
        batch's end or the next one, inside the epoch, however long the epochs take on a busy machine."""

        def on_train_batch_end(self, trainer: lightning.Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if trainer.current_epoch == 1 and batch_idx == 5:
                timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
                time.sleep(max(timer.time_remaining() or 0.0, 0.0) + 0.05)

    cb, counter = _green(), Counter()
    trainer = lightning.Trainer(max_epochs=50, max_time={"seconds": 3}, callbacks=[cb, counter, Slow()], **quiet_trainer_kwargs())
    trainer.fit(digits_classifier(), train, val)
    last = counter.epochs[-1]
    assert 0 < counter.train[last] < 1400, "the Timer did not stop inside an epoch"
    _check_fit_run(cb.session.run_id, tmp_path, counter)


# -- 7. min_epochs against an early stop ---------------------------------------------------------------
def test_min_epochs_outlasts_early_stopping(mlflow_experiment: str, tmp_path: Path) -> None:
    class Flat(type(digits_classifier())):  # type: ignore[misc]
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            super().validation_step(batch, batch_idx)
            self.log("flat", 1.0)  # never improves: EarlyStopping(patience=0) wants to stop after epoch 1

    train, val = loaders()
    cb, counter = _green(), Counter()
    stopper = EarlyStopping(monitor="flat", mode="min", patience=0)
    trainer = lightning.Trainer(max_epochs=10, min_epochs=3, callbacks=[cb, stopper, counter], **quiet_trainer_kwargs())
    trainer.fit(Flat(), train, val)
    assert counter.epochs == [0, 1, 2] and counter.total == 3 * 1400
    _check_fit_run(cb.session.run_id, tmp_path, counter)


# -- 8. the learning-rate finder -----------------------------------------------------------------------
def test_lr_find_then_fit_on_the_same_trainer(mlflow_experiment: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The Tuner's trials end its fit before the callbacks' start hooks: no run of their own, and a warning
    that says their energy is not logged and how to have it billed (it was dropped silently)."""
    from lightning.pytorch.tuner import Tuner

    train, val = loaders()
    cb, counter = _green(), Counter()
    trainer = lightning.Trainer(max_epochs=2, default_root_dir=tmp_path, callbacks=[cb, counter], **quiet_trainer_kwargs())
    model = digits_classifier()
    with caplog.at_level("WARNING", logger="mlflow_green"):
        Tuner(trainer).lr_find(model, train_dataloaders=train, val_dataloaders=val, num_training=20, update_attr=False)
    assert mlflow.active_run() is None
    assert any("Lightning's Tuner" in r.getMessage() and "are not logged" in r.getMessage() and "LearningRateFinder"
               in r.getMessage() for r in caplog.records)
    counter.reset()  # what the fit itself trains
    trainer.fit(model, train, val)
    runs = _runs(mlflow_experiment)
    assert [r.info.status for r in runs] == ["FINISHED"], "lr_find left a run of its own"
    assert runs[0].info.run_id == cb.session.run_id
    _check_fit_run(cb.session.run_id, tmp_path, counter)


def test_lr_find_inside_a_track_block_says_its_trials_are_in_the_blocks_total(
        mlflow_experiment: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Inside ``mlflow_green.track()`` the Tuner's trials are measured by the block: the warning says so (it said
    they were not logged, and to run the tuner inside a block)."""
    from lightning.pytorch.tuner import Tuner

    import mlflow_green

    train, val = loaders()
    with mlflow_green.track(meters=[FakeMeter(CONSTANT_100_W)]), caplog.at_level("WARNING", logger="mlflow_green"):
        trainer = lightning.Trainer(max_epochs=1, default_root_dir=tmp_path, callbacks=[_green()], **quiet_trainer_kwargs())
        Tuner(trainer).lr_find(digits_classifier(), train_dataloaders=train, val_dataloaders=val, num_training=10,
                               update_attr=False)
    messages = [r.getMessage() for r in caplog.records if "Lightning's Tuner" in r.getMessage()]
    assert len(messages) == 1 and "track() block's total" in messages[0] and "not logged" not in messages[0], messages


@pytest.mark.parametrize("green_first", [False, True], ids=["finder_first", "green_first"])
@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt], ids=["error", "ctrl_c"])
def test_a_learning_rate_finders_trial_that_fails_ends_the_fits_run(error: type[BaseException], green_first: bool,
                                                                     mlflow_experiment: str, tmp_path: Path) -> None:
    """``LearningRateFinder`` in the Trainer, its trial failing (an exception, Ctrl-C): Lightning leaves
    ``trainer.callbacks`` as the trial's, so no hook of ours is called. The fit's run still ends ``FAILED`` /
    ``KILLED`` with the energy until then, the meters closed; inside a run of the user's, into it, left active (there
    was no run, the meter measured on until the next fit)."""
    from lightning.pytorch.callbacks import LearningRateFinder

    train, val = loaders()
    base = type(digits_classifier())

    class FailsInTheTrial(base):  # type: ignore[misc, valid-type]
        lr = 0.01

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if self.trainer.global_step >= 2:
                raise error("bad batch")
            return super().training_step(batch, batch_idx)

    for users_run in (False, True):
        meter = FakeMeter(CONSTANT_100_W)
        cb, finder = GreenCallback(meters=[meter]), LearningRateFinder(num_training_steps=10)
        trainer = lightning.Trainer(max_epochs=1, default_root_dir=tmp_path, callbacks=[cb, finder] if green_first else [finder, cb],
                                    **quiet_trainer_kwargs())
        run = mlflow.start_run() if users_run else None
        started_s = time.monotonic()
        with pytest.raises(SystemExit if error is KeyboardInterrupt else error):  # Lightning exits on Ctrl-C
            trainer.fit(FailsInTheTrial(), train, val)
        wall_s = time.monotonic() - started_s
        assert meter.closed, "the meter measures on after the fit failed"
        if users_run:
            assert mlflow.active_run() is not None and mlflow.active_run().info.run_id == run.info.run_id
            mlflow.end_run()
            assert cb.session.run_id == run.info.run_id
        else:
            assert mlflow.active_run() is None
        result = MlflowClient().get_run(cb.session.run_id)
        assert result.info.status == ("FINISHED" if users_run else "KILLED" if error is KeyboardInterrupt else "FAILED")
        assert 0 < result.data.metrics[schema.DURATION_S] <= wall_s
        assert result.data.metrics[schema.ENERGY_KWH] * J_PER_KWH == pytest.approx(100.0 * result.data.metrics[schema.DURATION_S], rel=0.05)
        report = json.loads(Path(MlflowClient().download_artifacts(cb.session.run_id, schema.REPORT_ARTIFACT,
                                                                   str(tmp_path / f"r{users_run}"))).read_text())
        assert report["status"] == ("KILLED" if error is KeyboardInterrupt else "FAILED")
    assert len(_runs(mlflow_experiment)) == 2


def test_stochastic_weight_averaging_adding_an_epoch_is_projected(mlflow_experiment: str, tmp_path: Path) -> None:
    """``StochasticWeightAveraging`` adds an epoch (its BatchNorm update) in its ``on_fit_start``, after ours: the
    projection forecasts that epoch too (at the planned last epoch it equalled the energy so far, one epoch short)."""
    from lightning.pytorch.callbacks import StochasticWeightAveraging

    train, val = loaders()
    base = type(digits_classifier())

    class WithBatchNorm(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 10))

    cb = _green()
    trainer = lightning.Trainer(max_epochs=3, callbacks=[cb, StochasticWeightAveraging(swa_lrs=1e-2, swa_epoch_start=1)],
                                **quiet_trainer_kwargs())
    trainer.fit(WithBatchNorm(), train, val)
    run_id = cb.session.run_id
    hist = assert_green_invariants(run_id)
    assert [m.step for m in hist[schema.ENERGY_KWH]] == [0, 1, 2, 3]  # the added epoch
    energy = {m.step: m.value for m in hist[schema.ENERGY_KWH]}
    projected = {m.step: m.value for m in hist[schema.PROJECTED_ENERGY_KWH]}
    assert projected[2] > energy[2] + 0.5 * (energy[2] - energy[1]), (projected, energy)  # one more epoch to come
    assert projected[3] == pytest.approx(energy[3])


# -- 9. dataloaders reloaded every epoch, of changing length -------------------------------------------------
def test_reloaded_dataloaders_of_changing_length(mlflow_experiment: str, tmp_path: Path) -> None:
    base = type(digits_classifier())
    train, val = loaders()
    x, y = train.dataset.tensors
    batches = [10, 5, 15]

    class Growing(base):  # type: ignore[misc, valid-type]
        def train_dataloader(self) -> DataLoader:
            n = 64 * batches[self.current_epoch]
            return DataLoader(TensorDataset(x[:n], y[:n]), batch_size=64)

    cb, counter = _green(), Counter()
    trainer = lightning.Trainer(max_epochs=3, reload_dataloaders_every_n_epochs=1, callbacks=[cb, counter],
                                **quiet_trainer_kwargs())
    trainer.fit(Growing(), val_dataloaders=val)
    assert [counter.train[e] for e in counter.epochs] == [64 * b for b in batches]
    _check_fit_run(cb.session.run_id, tmp_path, counter)


# -- 10. resuming from a mid-epoch checkpoint, into a new run --------------------------------------------
class _CrashAtStep(lightning.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("node lost")


@pytest.mark.parametrize("which", ["path", "last"])
def test_resume_from_a_mid_epoch_checkpoint_into_a_new_run(which: str, mlflow_experiment: str, tmp_path: Path) -> None:
    """Lightning resuming inside an epoch calls no on_train_epoch_start for it: the epoch still gets its point,
    its samples (those trained after the resume) and its optimizer steps (from the restored global_step)."""
    train, val = loaders()
    kwargs = {**quiet_trainer_kwargs(), "enable_checkpointing": True, "default_root_dir": tmp_path}
    folder = tmp_path / "ckpt"
    first = _green()
    saver = ModelCheckpoint(dirpath=folder, every_n_train_steps=30, save_top_k=-1, save_last=True)
    with pytest.raises(RuntimeError, match="node lost"):  # a crash after the checkpoint at step 30 (epoch 1, batch 8)
        lightning.Trainer(max_epochs=3, callbacks=[first, saver, _CrashAtStep(33)], **kwargs).fit(
            digits_classifier(), train, val
        )
    assert MlflowClient().get_run(first.session.run_id).info.status == "FAILED"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=1-step=30.ckpt", "last.ckpt"]
    assert torch.load(folder / "last.ckpt", weights_only=False)["global_step"] == 30

    second, counter = _green(), Counter()
    ckpt_path = str(folder / "epoch=1-step=30.ckpt") if which == "path" else "last"
    trainer = lightning.Trainer(max_epochs=3, callbacks=[second, counter, ModelCheckpoint(dirpath=folder, save_last=True)],
                                **kwargs)
    trainer.fit(digits_classifier(), train, val, ckpt_path=ckpt_path)
    run_id = second.session.run_id
    assert run_id != first.session.run_id
    assert counter.epochs == [1, 2] and counter.train[1] < 1400  # Lightning resumes epoch 1 after its 8th batch
    run = MlflowClient().get_run(run_id)
    assert run.data.tags.get(schema.TAG_RESUMED_FROM) == first.session.run_id
    assert run.data.metrics[schema.ENERGY_KWH] * J_PER_KWH == pytest.approx(second.session.fit_total.energy_j, rel=1e-9)
    _, report = _check_fit_run(run_id, tmp_path, counter)
    assert [e["steps"] for e in report["epochs"]] == [44 - 30, 22]  # optimizer steps of each epoch, from step 30
    assert [r.info.status for r in _runs(mlflow_experiment)] == ["FAILED", "FINISHED"]


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_an_evaluation_of_a_checkpoint_resumes_nothing_for_the_next_fit(stage: str, mlflow_experiment: str, tmp_path: Path) -> None:
    """``trainer.test(..., ckpt_path=...)`` restores the callbacks' state from the checkpoint (Lightning does in every
    stage): the next fit with that callback, from scratch, is not tagged ``green.resumed_from`` the checkpoint's run."""
    train, val = loaders()
    kwargs = {**quiet_trainer_kwargs(), "enable_checkpointing": True, "default_root_dir": tmp_path}
    first = _green()
    lightning.Trainer(max_epochs=1, callbacks=[first, ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)],
                      **kwargs).fit(digits_classifier(), train, val)
    cb, counter = _green(), Counter()
    getattr(lightning.Trainer(callbacks=[cb], **quiet_trainer_kwargs()), stage)(
        digits_classifier(), val, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    lightning.Trainer(max_epochs=2, callbacks=[cb, counter], **quiet_trainer_kwargs()).fit(digits_classifier(), train, val)
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.run_id != first.session.run_id
    assert schema.TAG_RESUMED_FROM not in run.data.tags, run.data.tags
    _check_fit_run(run.info.run_id, tmp_path, counter)


def test_resume_with_max_steps_projects_from_the_restored_global_step(mlflow_experiment: str, tmp_path: Path) -> None:
    """Lightning restores a checkpoint's global_step after on_fit_start: the steps of the first resumed epoch
    count from the restored step, not from 0."""
    train, val = loaders()
    kwargs = {**quiet_trainer_kwargs(), "enable_checkpointing": True, "default_root_dir": tmp_path}
    folder = tmp_path / "ckpt"
    first = _green()
    with pytest.raises(RuntimeError, match="node lost"):  # end-of-epoch checkpoints at steps 22 and 44, a crash at 50
        lightning.Trainer(max_steps=88, callbacks=[first, ModelCheckpoint(dirpath=folder, save_top_k=-1), _CrashAtStep(50)],
                          **kwargs).fit(digits_classifier(), train, val)
    second, counter = _green(), Counter()
    trainer = lightning.Trainer(max_steps=88, callbacks=[second, counter], **kwargs)
    trainer.fit(digits_classifier(), train, val, ckpt_path=str(folder / "epoch=1-step=44.ckpt"))
    assert trainer.global_step == 88 and counter.epochs == [2, 3]
    hist, report = _check_fit_run(second.session.run_id, tmp_path, counter)
    assert [e["steps"] for e in report["epochs"]] == [22, 22]
    energy, projected = _values(hist, schema.ENERGY_KWH), _values(hist, schema.PROJECTED_ENERGY_KWH)
    epoch_energy = _values(hist, schema.EPOCH_ENERGY_KWH)
    # after epoch 2: 22 of the 44 remaining optimizer steps done, 22 left at epoch 2's energy per step
    assert projected[2] == pytest.approx(energy[2] + epoch_energy[2], rel=1e-6)


# -- 11. validate, fit, test on one Trainer without an active run ------------------------------------------
def test_validate_fit_test_on_one_trainer(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    cb, counter = _green(), Counter()
    trainer = lightning.Trainer(max_epochs=2, callbacks=[cb, counter], **quiet_trainer_kwargs())
    model = digits_classifier()
    trainer.validate(model, val)
    validate_run = cb.session.run_id
    counter.reset()
    trainer.fit(model, train, val)
    fit_run = cb.session.run_id
    trainer.test(model, val)
    assert mlflow.active_run() is None
    runs = _runs(mlflow_experiment)
    # validate alone makes a complete run of its own; fit a new run; test after fit logs into the fit's run
    assert [r.info.run_id for r in runs] == [validate_run, fit_run]
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    validated = runs[0].data.metrics
    assert validated[schema.ENERGY_VALIDATE_KWH] > 0 and schema.ENERGY_KWH not in validated
    assert _report(validate_run, tmp_path)["samples"] == {"validate": 397}
    fitted = MlflowClient().get_run(fit_run).data.metrics
    assert fitted[schema.ENERGY_TEST_KWH] > 0 and schema.ENERGY_VALIDATE_KWH not in fitted
    assert fitted[schema.phase_energy_per_sample_key("test")] > 0
    _, report = _check_fit_run(fit_run, tmp_path, counter)
    assert report["samples"]["test"] == 397 and "validate" not in report["samples"]
    assert report["phases"]["test"]["energy_j"] > 0 and "validate" not in report["phases"]


def test_validating_every_second_epoch_keeps_the_quality_series_one_metric(mlflow_experiment: str) -> None:
    class LogsTrainAccuracy(type(digits_classifier())):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            logits = self(x)
            self.log("train_acc", (logits.argmax(1) == y).float().mean())
            return torch.nn.functional.cross_entropy(logits, y)

    train, val = loaders()
    cb = _green()
    trainer = lightning.Trainer(max_epochs=3, check_val_every_n_epoch=2, num_sanity_val_steps=0, callbacks=[cb],
                                **quiet_trainer_kwargs())
    trainer.fit(LogsTrainAccuracy(), train, val)
    client = MlflowClient()
    run = client.get_run(cb.session.run_id)
    assert run.data.tags[schema.TAG_QUALITY_METRIC] == "val_acc"
    quality = sorted(m.step for m in client.get_metric_history(run.info.run_id, schema.QUALITY))
    assert quality == [1, 2]  # epoch 0 did not validate: its train_acc is not in the series


def test_a_validation_that_fails_counts_the_batches_it_finished(mlflow_experiment: str, tmp_path: Path) -> None:
    class FailsInSecondValidation(type(digits_classifier())):  # type: ignore[misc]
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            if self.current_epoch == 1 and batch_idx == 2:
                raise RuntimeError("a corrupt validation shard")
            super().validation_step(batch, batch_idx)

    train, val = loaders()  # validation: 397 samples in batches of 128
    cb = _green()
    trainer = lightning.Trainer(max_epochs=3, num_sanity_val_steps=0, callbacks=[cb], **quiet_trainer_kwargs())
    with pytest.raises(RuntimeError, match="corrupt"):
        trainer.fit(FailsInSecondValidation(), train, val)
    assert MlflowClient().get_run(cb.session.run_id).info.status == "FAILED"
    # epoch 0's whole validation, and the two batches the failed one finished (they were billed, not counted)
    assert _report(cb.session.run_id, tmp_path)["samples"] == {"train": 2 * 1400, "validation": 397 + 2 * 128}


def test_two_green_callbacks_in_one_trainer_are_refused_before_anything_is_logged(mlflow_experiment: str) -> None:
    """docs/lightning.md, "Runs": one GreenCallback per Trainer — Lightning refuses two stateful callbacks of one
    class (their checkpoint states would clash) as the Trainer is made, with an error that names the callback."""
    with pytest.raises(RuntimeError, match="more than one stateful callback of type `GreenCallback`"):
        lightning.Trainer(max_epochs=1, callbacks=[_green(), _green()], **quiet_trainer_kwargs())
    assert _runs(mlflow_experiment) == [] and mlflow.active_run() is None


class LogModelAfterPruning(lightning.Callback):
    """Listed after ModelPruning: logs the model's compression metadata at each epoch's end (docs/lightning.md)."""

    def __init__(self, green: GreenCallback) -> None:
        self.green = green

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.green.log_model(pl_module)


@pytest.mark.parametrize("log_each_epoch", [False, True])
def test_model_pruning_during_training(log_each_epoch: bool, mlflow_experiment: str, tmp_path: Path) -> None:
    """Lightning's ModelPruning (half of what is left, at each epoch's end): the fit's start and end profiles give
    sparsity at the first and last steps; a callback calling ``log_model`` after the pruning one logs each epoch's."""
    from lightning.pytorch.callbacks import ModelPruning

    green = _green()
    pruning = ModelPruning("l1_unstructured", amount=0.5, use_global_unstructured=False, verbose=0)
    callbacks = [green, pruning] + ([LogModelAfterPruning(green)] if log_each_epoch else [])
    trainer = lightning.Trainer(max_epochs=3, callbacks=callbacks, num_sanity_val_steps=0, **quiet_trainer_kwargs())
    trainer.fit(digits_classifier(), *loaders())
    run_id = green.session.run_id
    sparsity = [(m.step, round(m.value, 4)) for m in _history(run_id, schema.MODEL_SPARSITY)]
    # the pruned weights lose half of what is left each epoch (sparsity over the prunable weights, as in report.json)
    assert sparsity == ([(0, 0.5), (1, 0.75), (2, 0.875)] if log_each_epoch else [(0, 0.0), (2, 0.875)]), sparsity
    assert _report(run_id, tmp_path)["model"]["sparsity"] == pytest.approx(0.875)
    assert_green_invariants(run_id)


class _FailsInSetup(lightning.Callback):
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        raise RuntimeError("cannot reach the feature store")


@pytest.mark.parametrize(("where", "raised", "status"), [
    ("configure_optimizers", RuntimeError, "FAILED"),
    ("a later callback's setup", RuntimeError, "FAILED"),
    ("configure_optimizers, Ctrl-C", SystemExit, "KILLED"),  # Lightning exits with SystemExit(1) on KeyboardInterrupt
])
def test_a_fit_that_ends_before_training_begins_gets_its_run(where: str, raised: type, status: str,
                                                              mlflow_experiment: str, tmp_path: Path) -> None:
    """docs/lightning.md, "When the measurement starts": measured from our setup, so a fit ending between it and
    on_fit_start is a run with that energy (it was none: the measurement was dropped)."""
    model, callbacks = digits_classifier(), [_green()]
    if where == "a later callback's setup":
        callbacks.append(_FailsInSetup())
    else:
        interrupt = where.endswith("Ctrl-C")

        def configure_optimizers() -> Any:
            time.sleep(0.3)  # building the optimizer takes a while, then fails
            raise KeyboardInterrupt() if interrupt else RuntimeError("unknown optimizer 'adamw8bit'")

        model.configure_optimizers = configure_optimizers
    with pytest.raises(raised):
        lightning.Trainer(max_epochs=2, callbacks=callbacks, **quiet_trainer_kwargs()).fit(model, *loaders())
    runs = _runs(mlflow_experiment)
    assert len(runs) == 1 and runs[0].info.status == status and mlflow.active_run() is None
    metrics = runs[0].data.metrics
    assert metrics[schema.ENERGY_KWH] > 0 and metrics[schema.ENERGY_OTHER_KWH] == metrics[schema.ENERGY_KWH]
    if where.startswith("configure_optimizers"):  # the 0.3 s at 100 W
        assert metrics[schema.ENERGY_KWH] * J_PER_KWH >= 100.0 * 0.3 * 0.95, metrics
    assert _report(runs[0].info.run_id, tmp_path)["status"] == status
    assert_green_invariants(runs[0].info.run_id)


def test_a_fit_inside_track_gets_a_child_run_of_the_blocks_run(mlflow_experiment: str, tmp_path: Path) -> None:
    """docs/lightning.md: ``with mlflow_green.track(): trainer.fit(...)`` bills what precedes every callback hook (a
    DataModule's setup) to the block's run; the GreenCallback kept in the Trainer gets a child run of it with the
    fit's phases and epochs (found by an adversarial probe: both wrote into one run — two points at step 0, the
    total going down, the callback's report replaced)."""
    import mlflow_green

    class SlowSetup(lightning.LightningDataModule):
        def setup(self, stage: str) -> None:
            time.sleep(0.5)  # before any callback hook: only the block sees it

        def train_dataloader(self) -> DataLoader:
            return loaders()[0]

    green = _green()
    with mlflow_green.track(meters=[FakeMeter(CONSTANT_100_W)]) as block:
        lightning.Trainer(max_epochs=2, callbacks=[green], **quiet_trainer_kwargs()).fit(digits_classifier(), datamodule=SlowSetup())
    child = MlflowClient().get_run(green.session.run_id)
    assert child.data.tags["mlflow.parentRunId"] == block.run_id != child.info.run_id
    assert child.info.status == "FINISHED" and mlflow.active_run() is None
    assert [m.step for m in _history(child.info.run_id, schema.ENERGY_KWH)] == [0, 1]
    assert _report(child.info.run_id, tmp_path)["samples"] == {"train": 2800}
    assert_green_invariants(child.info.run_id)
    blocks = _history(block.run_id, schema.ENERGY_KWH)  # one point: the whole block, setup included
    assert len(blocks) == 1 and blocks[0].value * J_PER_KWH >= child.data.metrics[schema.ENERGY_KWH] * J_PER_KWH + 100.0 * 0.5 * 0.9


@pytest.mark.parametrize("form", ["dict", "list"])
def test_a_combined_loader_counts_every_loaders_samples_and_profiles_the_first(form: str, mlflow_experiment: str,
                                                                              tmp_path: Path) -> None:
    """A CombinedLoader of two training loaders: each step trains on both loaders' batches (found by an adversarial
    probe: only the first loader's samples were counted, and the profile failed on the combined batch: no FLOPs)."""
    from lightning.pytorch.utilities import CombinedLoader

    train, _ = loaders()  # 1400 samples in 22 batches of 64
    dataset = train.dataset
    other = DataLoader(TensorDataset(dataset.tensors[0][:704], dataset.tensors[1][:704]), batch_size=32)  # 22 of 32
    model = digits_classifier()
    model.example_input_array = None  # profiled on the first batch

    def training_step(batch: Any, batch_idx: int) -> torch.Tensor:
        parts = batch.values() if isinstance(batch, dict) else batch
        return sum(torch.nn.functional.cross_entropy(model(x), y) for x, y in parts)

    model.training_step = training_step
    combined = CombinedLoader({"a": train, "b": other} if form == "dict" else [train, other], "max_size_cycle")
    green = _green()
    lightning.Trainer(max_epochs=2, callbacks=[green], **quiet_trainer_kwargs()).fit(model, combined)
    run_id = green.session.run_id
    assert _report(run_id, tmp_path)["samples"] == {"train": 2 * (1400 + 704)}
    metrics = MlflowClient().get_run(run_id).data.metrics
    assert metrics[schema.MODEL_FLOPS_PER_SAMPLE] == 2 * (64 * 32 + 32 * 10) + 32 + 10 and metrics[schema.FLOP_PER_J] > 0
    assert_green_invariants(run_id)


def test_a_training_step_reading_a_dataloader_iter_is_profiled_on_its_first_batch(mlflow_experiment: str) -> None:
    """``training_step(self, dataloader_iter)``: Lightning hands on_train_batch_start ``batch=None`` (found by an
    adversarial probe: no example input, so no FLOPs and no FLOP/J); the batch end has the batch."""
    class ReadsIterator(type(digits_classifier())):  # Lightning looks for the parameter on the class's hook
        def training_step(self, dataloader_iter: Any) -> torch.Tensor:
            (x, y), _, _ = next(dataloader_iter)
            return torch.nn.functional.cross_entropy(self(x), y)

    model = ReadsIterator()
    model.example_input_array = None
    green = _green()
    lightning.Trainer(max_epochs=1, callbacks=[green], **quiet_trainer_kwargs()).fit(model, loaders()[0])
    metrics = MlflowClient().get_run(green.session.run_id).data.metrics
    assert metrics[schema.MODEL_FLOPS_PER_SAMPLE] == 2 * (64 * 32 + 32 * 10) + 32 + 10 and metrics[schema.FLOP_PER_J] > 0
    assert_green_invariants(green.session.run_id)


# -- 12. the projection counts the work between epochs that recurs -------------------------------------


class _SlowCheckpoint(lightning.Callback):
    """Another callback's work at every epoch's end, after ours (a checkpoint written): 0.3 s."""

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        time.sleep(0.3)


def test_projection_counts_a_checkpoint_written_after_every_epoch(mlflow_experiment: str, tmp_path: Path) -> None:
    """After epoch 1 of 4, the two remaining epochs cost what epoch 1 grew the total by: its window and
    the 0.3 s checkpoint after epoch 0 (the window alone would forecast 0.6 s × 100 W short); and the
    checkpoint after the last epoch comes on top (without it the forecast fell 0.3 s × 100 W short)."""
    train, val = loaders()
    cb, counter = _green(), Counter()
    trainer = lightning.Trainer(max_epochs=4, callbacks=[cb, _SlowCheckpoint(), counter], **quiet_trainer_kwargs())
    trainer.fit(digits_classifier(), train, val)
    hist, _ = _check_fit_run(cb.session.run_id, tmp_path, counter)
    energy, projected = _values(hist, schema.ENERGY_KWH), _values(hist, schema.PROJECTED_ENERGY_KWH)
    epochs = _values(hist, schema.EPOCH_ENERGY_KWH)
    growth = energy[1] - energy[0]
    assert growth - epochs[1] > 0.25 * 100 / J_PER_KWH, "epoch 0's checkpoint falls between the two epoch ends"
    assert projected[1] == pytest.approx(energy[1] + 2 * growth + (growth - epochs[1]), rel=1e-6)  # epoch 0's window left out
    assert projected[1] > energy[1] + 2 * epochs[1] + 3 * 0.25 * 100 / J_PER_KWH


# -- 13. another callback's epoch-end work before ours, without validation: other, not train --------------


class _Clock(lightning.Callback):
    """Listed first: the epochs' training from their start to their last batch's end."""

    def __init__(self) -> None:
        self.training_s = 0.0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.began_s = time.perf_counter()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.last_batch_s = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.training_s += self.last_batch_s - self.began_s


def test_epoch_end_work_of_a_callback_before_ours_without_validation_is_other(mlflow_experiment: str,
                                                                             tmp_path: Path) -> None:
    """[Slow(), GreenCallback()] and no validation: the 0.3 s of the callback listed first runs after the
    epoch's last batch and before our epoch end — read as `other` from a reading taken as the fit loop ends
    the epoch (before any callback's on_train_epoch_end), not billed to training."""
    train, _ = loaders()
    clock, meter, counter = _Clock(), FakeMeter(CONSTANT_100_W), Counter()
    cb = GreenCallback(meters=[meter])
    trainer = lightning.Trainer(max_epochs=3, callbacks=[clock, _SlowCheckpoint(), cb, counter], **quiet_trainer_kwargs())
    trainer.fit(digits_classifier(), train)
    hist, _ = _check_fit_run(cb.session.run_id, tmp_path, counter)
    train_j = hist[schema.ENERGY_TRAIN_KWH][-1].value * J_PER_KWH
    data_j = hist[schema.ENERGY_DATA_KWH][-1].value * J_PER_KWH
    other = _values(hist, schema.ENERGY_OTHER_KWH)
    assert all(other[e] - other.get(e - 1, 0.0) >= 0.3 * 100 * 0.95 / J_PER_KWH for e in (0, 1, 2)), other
    assert train_j + data_j <= 100.0 * (clock.training_s + 3 * 0.02), (train_j, data_j, clock.training_s)


def test_the_modules_own_batch_end_work_on_the_last_batch_is_training(mlflow_experiment: str, tmp_path: Path) -> None:
    """The module's ``on_train_batch_end`` runs after every callback's: on the epoch's last batch it is training
    too, not `other` (an adversarial probe found it billed to `other` when the reading was taken at our
    last-batch hook; it is taken as the fit loop ends the epoch)."""

    class SlowBatchEnd(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(64, 10)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            time.sleep(0.1)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), 0.1)

    x, y = torch.randn(160, 64), torch.randint(0, 10, (160,))
    cb, counter = _green(), Counter()
    trainer = lightning.Trainer(max_epochs=3, callbacks=[cb, counter], **quiet_trainer_kwargs())
    trainer.fit(SlowBatchEnd(), DataLoader(TensorDataset(x, y), batch_size=32))
    hist, _ = _check_fit_run(cb.session.run_id, tmp_path, counter)
    other = _values(hist, schema.ENERGY_OTHER_KWH)
    assert all(other[e] - other.get(e - 1, 0.0) < 0.05 * 100 / J_PER_KWH for e in (1, 2)), other  # a last batch's 0.1 s


def test_a_fit_with_validation_still_reads_the_meters_twice_an_epoch(
    mlflow_experiment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reading as the fit loop ends the epoch is the validation's end reading, reused: no extra read
    (widened to 50 ms: a loaded host's pauses)."""
    import mlflow_green.training.session_windows as windows

    train, val = loaders()
    meter, counter, reads = FakeMeter(CONSTANT_100_W), Counter(), []

    class Reads(lightning.Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            reads.append(meter.reads)

    monkeypatch.setattr(windows, "EPOCH_GAP_S", 0.05)
    cb = GreenCallback(meters=[meter])
    trainer = lightning.Trainer(max_epochs=4, num_sanity_val_steps=0, callbacks=[cb, counter, Reads()],
                                **quiet_trainer_kwargs())
    trainer.fit(digits_classifier(), train, val)
    _check_fit_run(cb.session.run_id, tmp_path, counter)
    assert [b - a for a, b in zip(reads, reads[1:])] == [2, 2, 2], reads
    assert "on_advance_end" not in trainer.fit_loop.__dict__  # the loop's own method again after the fit
