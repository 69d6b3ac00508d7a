"""The Lightning callback's batch hooks step out of the batches that need nothing of them, and the counts stay exact.

Where a plain DataLoader's batches follow from its sampler (``integrations/_lightning_batch_count.py``), the
training and validation samples are read from Lightning's progress counters: our ``on_train_batch_end`` and
``on_validation_batch_end`` are not called (Lightning's ``SimpleProfiler`` records every callback hook call). Any
other input — a custom ``collate_fn``, an ``IterableDataset``, a budget checked after batches, a subclass's own
hook — is counted at each batch, as before. Every case checks the samples the run's report holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

pytest.importorskip("lightning")

import lightning  # noqa: E402
import torch  # noqa: E402
from green_invariants import assert_green_invariants  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402
from torch.utils.data import DataLoader, IterableDataset, Sampler, default_collate  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402

BATCH_END = "[Callback]GreenCallback.on_train_batch_end"
VALIDATION_BATCH_END = "[Callback]GreenCallback.on_validation_batch_end"
TRAIN_SAMPLES, VAL_SAMPLES = 1400, 397  # loaders(): 22 batches of 64 (the last 56), validation 4 of 128 (the last 13)


def _fit(tmp_path: Path, callback: Any, train: Any, val: Any, model: Any = None, **trainer_kwargs: Any) -> tuple[Any, dict]:
    profiler = lightning.pytorch.profilers.SimpleProfiler(dirpath=tmp_path, filename="hooks")
    kwargs = {"max_epochs": 2, "num_sanity_val_steps": 0, **quiet_trainer_kwargs(), **trainer_kwargs}
    trainer = lightning.Trainer(callbacks=[callback], profiler=profiler, **kwargs)
    try:
        trainer.fit(model or digits_classifier(), train, val)
    finally:
        client = MlflowClient()
        path = client.download_artifacts(callback.session.run_id, schema.REPORT_ARTIFACT, str(tmp_path))
        report = json.loads(Path(path).read_text())
    return trainer, report


def _calls(trainer: Any, key: str) -> int:
    return len(trainer.profiler.recorded_durations.get(key, []))


def test_a_plain_dataloaders_batches_are_counted_from_the_loops_progress(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    cb = GreenCallback()
    trainer, report = _fit(tmp_path, cb, train, val)
    assert (_calls(trainer, BATCH_END), _calls(trainer, VALIDATION_BATCH_END)) == (0, 0)  # 44 and 8 calls before
    assert report["samples"]["train"] == 2 * TRAIN_SAMPLES and report["samples"]["validation"] == 2 * VAL_SAMPLES
    assert callable(cb.on_train_batch_end) and callable(cb.on_validation_batch_end)  # back after the fit
    assert_green_invariants(cb.session.run_id)


@pytest.mark.parametrize(
    ("case", "trainer_kwargs", "train_samples", "val_samples"),
    [
        ("drop_last", {}, 2 * 21 * 64, 2 * VAL_SAMPLES),
        ("limited", {"limit_train_batches": 5, "limit_val_batches": 2}, 2 * 5 * 64, 2 * 2 * 128),
        ("mid-epoch validation", {"val_check_interval": 0.5}, 2 * TRAIN_SAMPLES, 4 * VAL_SAMPLES),
        ("max_steps mid-epoch", {"max_epochs": -1, "max_steps": 30}, TRAIN_SAMPLES + 8 * 64, VAL_SAMPLES),
        ("reloaded each epoch", {"reload_dataloaders_every_n_epochs": 1}, 2 * TRAIN_SAMPLES, 2 * VAL_SAMPLES),
    ],
)
def test_counted_from_progress_in_every_loop_configuration(
    mlflow_experiment: str, tmp_path: Path, case: str, trainer_kwargs: dict, train_samples: int, val_samples: int
) -> None:
    train, val = loaders()
    if case == "drop_last":
        train = DataLoader(train.dataset, batch_size=64, shuffle=True, drop_last=True)
    cb = GreenCallback()
    trainer, report = _fit(tmp_path, cb, train, val, **trainer_kwargs)
    assert _calls(trainer, BATCH_END) == 0, case
    assert (report["samples"]["train"], report["samples"]["validation"]) == (train_samples, val_samples), case
    assert_green_invariants(cb.session.run_id)


def _halves(items: list) -> Any:
    """A collate_fn that drops every other sample (a filter of bad records, say)."""
    return default_collate(items[::2])


class FirstThousand(Sampler):
    """A sampler of your own: its length says 1 400, it yields the first 1 000 indices (a filter applied late)."""

    def __len__(self) -> int:
        return TRAIN_SAMPLES

    def __iter__(self) -> Any:
        return iter(range(1000))


class Stream(IterableDataset):
    """The digits as a stream: no length, no sampler."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __iter__(self) -> Any:
        return iter(self.dataset)


def test_inputs_whose_batches_do_not_follow_from_the_loader_are_counted_at_each_batch(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    filtered = DataLoader(train.dataset, batch_size=64, collate_fn=_halves)
    cb = GreenCallback()
    trainer, report = _fit(tmp_path, cb, filtered, DataLoader(val.dataset, batch_size=128, collate_fn=_halves))
    assert (_calls(trainer, BATCH_END), _calls(trainer, VALIDATION_BATCH_END)) == (44, 8)
    assert report["samples"]["train"] == 2 * sum((n + 1) // 2 for n in [64] * 21 + [56])  # 700 an epoch, not 1400
    assert report["samples"]["validation"] == 2 * sum((n + 1) // 2 for n in (128, 128, 128, 13))

    own_sampler = DataLoader(train.dataset, batch_size=64, sampler=FirstThousand())
    cb = GreenCallback()
    trainer, report = _fit(tmp_path, cb, own_sampler, val)
    assert _calls(trainer, BATCH_END) == 2 * 16 and report["samples"]["train"] == 2 * 1000  # not its length's 1 400

    streamed = DataLoader(Stream(train.dataset), batch_size=64)
    cb = GreenCallback()
    trainer, report = _fit(tmp_path, cb, streamed, val)
    assert _calls(trainer, BATCH_END) == 44 and _calls(trainer, VALIDATION_BATCH_END) == 0
    assert report["samples"]["train"] == 2 * TRAIN_SAMPLES


def test_a_budget_or_a_subclasss_hook_keeps_the_batch_end_called(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    cb = GreenCallback(max_energy_kwh=1.0)  # checked after batches (every 2 s)
    trainer, report = _fit(tmp_path, cb, train, val)
    assert _calls(trainer, BATCH_END) == 44 and report["samples"]["train"] == 2 * TRAIN_SAMPLES

    class Counts(GreenCallback):
        ends = 0

        def on_train_batch_end(self, *args: Any) -> None:
            type(self).ends += 1
            super().on_train_batch_end(*args)

    cb = Counts()
    _, report = _fit(tmp_path, cb, train, val)
    assert Counts.ends == 44 and report["samples"]["train"] == 2 * TRAIN_SAMPLES


def test_a_fit_failing_inside_an_epoch_counts_the_batches_it_trained(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    cb = GreenCallback()
    with pytest.raises(RuntimeError, match="loss exploded"):  # at the 4th batch of the second epoch
        _fit(tmp_path, cb, train, val, model=digits_classifier(fail_at_epoch=1))
    run = MlflowClient().get_run(cb.session.run_id)
    report = json.loads(Path(MlflowClient().download_artifacts(run.info.run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert run.info.status == "FAILED" and report["samples"]["train"] == TRAIN_SAMPLES + 3 * 64
    assert callable(cb.on_train_batch_end)


def test_a_checkpoint_saved_mid_epoch_holds_the_samples_of_the_batches_before_it(mlflow_experiment: str, tmp_path: Path) -> None:
    """Lightning's ModelCheckpoint saves after every callback's batch end (ours stepped out): its batch counts."""
    train, val = loaders()
    cb = GreenCallback()
    saved: list[int] = []

    class Saves(lightning.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx == 4:
                saved.append(cb.state_dict()["samples"].get("train", 0))

    trainer = lightning.Trainer(max_epochs=1, callbacks=[cb, Saves()], **quiet_trainer_kwargs())
    trainer.fit(digits_classifier(), train, val)
    assert saved == [5 * 64]


def test_the_fetch_timer_keeps_a_profilers_fetch_records(mlflow_experiment: str, tmp_path: Path) -> None:
    """With a profiler that records, the loop's fetch hooks are still called (one record per fetch)."""
    train, val = loaders()
    trainer, _ = _fit(tmp_path, GreenCallback(), train, val)
    assert _calls(trainer, "[_TrainingEpochLoop].train_dataloader_next") == 2 * 22  # one record per fetch
    assert torch.is_tensor(trainer.callback_metrics["val_acc"])


@pytest.mark.parametrize(("skip_at", "per_batch"), [(10, False), (0, False), (10, True)])
def test_a_batch_the_module_skips_is_not_counted(mlflow_experiment: str, tmp_path: Path, skip_at: int, per_batch: bool) -> None:
    """The module's ``on_train_batch_start`` returning -1 ends the epoch without training that batch: Lightning counts
    it ``processed`` but never ``started``. It was counted as trained (1 056 samples for 960 trained; 96 for none)."""
    class SkipsTheRest(type(digits_classifier())):
        def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
            return -1 if batch_idx == skip_at else None

    train, val = loaders(32)
    if per_batch:  # counted at each batch end instead
        train = DataLoader(train.dataset, batch_size=32, shuffle=True, collate_fn=lambda b: default_collate(b))
    cb = GreenCallback()
    trainer, report = _fit(tmp_path, cb, train, val, model=SkipsTheRest(), max_epochs=3)
    assert trainer.global_step == 3 * skip_at
    assert report["samples"].get("train", 0) == 3 * skip_at * 32
    assert_green_invariants(cb.session.run_id)


@pytest.mark.parametrize("where", ["callback", "module"])
def test_a_fit_failing_as_an_epoch_starts_does_not_count_the_previous_epoch_again(
    mlflow_experiment: str, tmp_path: Path, where: str
) -> None:
    """A callback listed after ours (or the module, whose hook Lightning calls after the callbacks') raising in epoch
    1's ``on_train_epoch_start``: the loop's own epoch counters still held epoch 0's 22 batches, which were counted a
    second time (2 800 samples for 1 400 trained). So did a checkpoint saved there."""
    saved: list[int] = []
    cb = GreenCallback()

    class FailsAtEpochOne(lightning.Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.current_epoch == 1:
                saved.append(cb.state_dict()["samples"].get("train", 0))
                if where == "callback":
                    raise RuntimeError("cannot start the epoch")

    class ModuleFails(type(digits_classifier())):
        def on_train_epoch_start(self) -> None:
            if self.current_epoch == 1:
                raise RuntimeError("cannot start the epoch")

    train, val = loaders()
    trainer = lightning.Trainer(max_epochs=2, callbacks=[cb, FailsAtEpochOne()], **quiet_trainer_kwargs())
    with pytest.raises(RuntimeError, match="cannot start the epoch"):
        trainer.fit(ModuleFails() if where == "module" else digits_classifier(), train, val)
    run = MlflowClient().get_run(cb.session.run_id)
    report = json.loads(Path(MlflowClient().download_artifacts(run.info.run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert run.info.status == "FAILED" and trainer.global_step == 22
    assert report["samples"]["train"] == TRAIN_SAMPLES and saved == [TRAIN_SAMPLES]
    assert_green_invariants(cb.session.run_id)


def _pulling_model(per_call: int) -> Any:
    """Every step reads a ``dataloader_iter`` and pulls up to ``per_call`` batches from it."""

    def pull(dataloader_iter: Any) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(per_call):
            try:
                (x, y), _, _ = next(dataloader_iter)
            except StopIteration:
                break
            xs.append(x)
            ys.append(y)
        return torch.cat(xs), torch.cat(ys)

    class PullsBatches(type(digits_classifier())):  # Lightning looks for the parameter on the class's hooks
        def training_step(self, dataloader_iter: Any) -> torch.Tensor:
            x, y = pull(dataloader_iter)
            return torch.nn.functional.cross_entropy(self(x), y)

        def validation_step(self, dataloader_iter: Any) -> None:
            x, y = pull(dataloader_iter)
            self.log("val_acc", (self(x).argmax(1) == y).float().mean())

        def test_step(self, dataloader_iter: Any) -> None:
            self.validation_step(dataloader_iter)

        def predict_step(self, dataloader_iter: Any) -> torch.Tensor:
            return self(pull(dataloader_iter)[0]).argmax(1)

    return PullsBatches()


@pytest.mark.parametrize("per_call", [2, 1])
@pytest.mark.parametrize("loader", ["plain", "custom collate"])
def test_steps_reading_a_dataloader_iter_count_every_batch_they_pull(
    mlflow_experiment: str, tmp_path: Path, per_call: int, loader: str
) -> None:
    """``training_step(self, dataloader_iter)`` pulling two batches a call: Lightning counts a step per call and hands
    the batch end the last batch pulled, so 1 408 samples were counted for 2 800 trained (1 392 batch by batch);
    a ``validation_step`` likewise (448 for 794). Each batch is counted as the step pulls it, in a fit and in
    ``trainer.test`` / ``trainer.predict`` alone."""
    train, val = loaders(32)
    if loader == "custom collate":  # counted batch by batch otherwise
        train = DataLoader(train.dataset, batch_size=32, shuffle=True, collate_fn=lambda b: default_collate(b))
        val = DataLoader(val.dataset, batch_size=32, collate_fn=lambda b: default_collate(b))
    cb = GreenCallback()
    trainer, report = _fit(tmp_path, cb, train, val, model=_pulling_model(per_call))
    assert report["samples"]["train"] == 2 * TRAIN_SAMPLES and report["samples"]["validation"] == 2 * VAL_SAMPLES
    assert_green_invariants(cb.session.run_id)

    evaluations = GreenCallback()
    tester = lightning.Trainer(callbacks=[evaluations], **quiet_trainer_kwargs())
    tester.test(_pulling_model(per_call), val)
    tester.predict(_pulling_model(per_call), val)
    path = MlflowClient().download_artifacts(evaluations.session.run_id, schema.REPORT_ARTIFACT, str(tmp_path / "evaluations"))
    samples = json.loads(Path(path).read_text())["samples"]
    assert samples["test"] == VAL_SAMPLES and samples["predict"] == VAL_SAMPLES


@pytest.mark.parametrize("reads_iterator", [True, False])
def test_a_step_that_raises_after_taking_its_batches_is_not_counted_either_way(
    mlflow_experiment: str, tmp_path: Path, reads_iterator: bool
) -> None:
    """A batch-taking step that raises is not counted (its batch is never processed); a ``dataloader_iter`` step's
    pulls were counted as pulled, so a failed run's samples depended on the step's signature (352 against 320)."""
    class RaisesAtTen(type(digits_classifier())):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if batch_idx == 10:
                raise RuntimeError("step failed")
            return super().training_step(batch, batch_idx)

    class PullsThenRaisesAtTen(type(digits_classifier())):
        def training_step(self, dataloader_iter: Any) -> torch.Tensor:
            (x, y), batch_idx, _ = next(dataloader_iter)
            if batch_idx == 10:
                raise RuntimeError("step failed")
            return torch.nn.functional.cross_entropy(self(x), y)

    cb = GreenCallback()
    with pytest.raises(RuntimeError, match="step failed"):
        _fit(tmp_path, cb, *loaders(32), model=PullsThenRaisesAtTen() if reads_iterator else RaisesAtTen())
    report = json.loads(Path(MlflowClient().download_artifacts(cb.session.run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert report["samples"]["train"] == 10 * 32 and cb.state_dict()["samples"]["train"] == 10 * 32


def test_a_dataloader_iter_steps_last_call_ended_by_the_data_is_not_counted(mlflow_experiment: str, tmp_path: Path) -> None:
    """Three batches a call with a bare ``next()``: each epoch's last call pulls two (32 + 24), then ``next()`` ends the
    epoch inside the step, which never trains them — they were counted (2 800 for 2 688 trained)."""
    trained = {"samples": 0}

    class PullsThree(type(digits_classifier())):
        def training_step(self, dataloader_iter: Any) -> torch.Tensor:
            batches = [next(dataloader_iter)[0] for _ in range(3)]
            x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
            trained["samples"] += len(x)
            return torch.nn.functional.cross_entropy(self(x), y)

    cb = GreenCallback()
    _, report = _fit(tmp_path, cb, *loaders(32), model=PullsThree())
    assert trained["samples"] == 2 * 14 * 96 and report["samples"]["train"] == trained["samples"]
    assert_green_invariants(cb.session.run_id)


class _Pool(torch.utils.data.Dataset):
    """Digits rows ``[0, size)``, the size changed during the fit (a curriculum, hard examples pruned)."""

    def __init__(self, size: int, offset: int = 0) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        self.x = torch.tensor(digits.data / 16.0, dtype=torch.float32)[offset:]
        self.y = torch.tensor(digits.target)[offset:]
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


class _Reshapes(lightning.Callback):
    """Listed before GreenCallback: resizes the pools at each epoch's (validation's) end, sets the training batch size at
    epoch 1's start; counts the samples each batch really had."""

    def __init__(self, train: Any, val: Any, *, train_step: int = 0, val_step: int = 0, batch_size: int | None = None) -> None:
        self.train, self.val, self.train_step, self.val_step, self.batch_size = train, val, train_step, val_step, batch_size
        self.trained = self.validated = 0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self.batch_size and trainer.current_epoch == 1:
            trainer.train_dataloader.batch_sampler.batch_size = self.batch_size

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.trained += len(batch[0])

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.validated += 0 if trainer.sanity_checking else len(batch[0])

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self.val.dataset.size += self.val_step

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.train.dataset.size += self.train_step


@pytest.mark.parametrize("change", [{"train_step": -300, "val_step": -100}, {"train_step": 100}, {"batch_size": 128},
                                    {"batch_size": 128, "after_ours": True}])
def test_a_dataset_resized_or_rebatched_during_the_fit_counts_the_batches_each_epoch_had(
        mlflow_experiment: str, tmp_path: Path, change: dict[str, Any]) -> None:
    """The loader's length (and batch size) as each pass's iterator is made, not as its samples are counted: a callback
    listed before ours resizing the pool at the epoch's end made the epoch's last batch the next epoch's (700 / 1100
    counted for 1000 / 1700 trained); a batch size set at an epoch's start was not seen (1 512 for 2 000), nor, read at
    our epoch start, one set by a callback listed after ours (or the module's own ``on_train_epoch_start``)."""
    train = DataLoader(_Pool(1000), batch_size=64, shuffle=True)
    val = DataLoader(_Pool(390, offset=1400), batch_size=64)
    after_ours = change.pop("after_ours", False)
    reshapes = _Reshapes(train, val, **change)
    cb = GreenCallback()
    profiler = lightning.pytorch.profilers.SimpleProfiler(dirpath=tmp_path, filename="hooks")
    callbacks = [cb, reshapes] if after_ours else [reshapes, cb]
    trainer = lightning.Trainer(callbacks=callbacks, profiler=profiler, **{**quiet_trainer_kwargs(), "max_epochs": 3})
    trainer.fit(digits_classifier(), train, val)
    assert _calls(trainer, BATCH_END) == 0  # counted from the loop's progress
    assert dict(cb.session.samples) == {"train": reshapes.trained, "validation": reshapes.validated}, change
    assert_green_invariants(cb.session.run_id)
