"""``green/flop_per_j`` of a run holding fits of different models: each fit's samples at its own model's FLOPs.

A run holds several fits when one callback is given to two ``fit`` calls, or two Trainers train in turn
in the user's run. Each sample was counted at the last model's FLOPs per sample, so a small model then a
large one logged ``flop_per_j`` 35 % high. Real Lightning fits of two digits classifiers (hidden 32, then
128) with a constant 100 W fake meter; the samples each fit trained are counted by a callback of the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

pytest.importorskip("lightning")

import lightning  # noqa: E402
from green_invariants import assert_green_invariants  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402
from mlflow_green.training.state import SessionState  # noqa: E402

J_PER_KWH = 3.6e6


class Samples(lightning.Callback):
    """The samples a fit trained and validated (outside the sanity check)."""

    def __init__(self) -> None:
        self.train = self.validation = 0

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.train += len(batch[0])

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            self.validation += len(batch[0])


def _fit(cb: GreenCallback, hidden: int, tmp_path: Path, *, trainer: lightning.Trainer | None = None,
         epochs: int = 1) -> tuple[float, Samples]:
    """One fit of a digits classifier with ``hidden`` units; returns its FLOPs per sample and its samples."""
    samples = Samples()
    trainer = trainer or lightning.Trainer(max_epochs=epochs, default_root_dir=tmp_path, callbacks=[cb],
                                           **quiet_trainer_kwargs())
    trainer.callbacks.append(samples)
    train, val = loaders()
    trainer.fit(digits_classifier(hidden=hidden), train, val)
    trainer.callbacks.remove(samples)
    assert cb.session.profile is not None and cb.session.profile.flops_per_sample
    return cb.session.profile.flops_per_sample, samples


def _expected_flop_per_j(run_id: str, fits: list[tuple[float, Samples]]) -> float:
    energy_j = MlflowClient().get_run(run_id).data.metrics[schema.ENERGY_KWH] * J_PER_KWH
    return sum(3 * flops * s.train + flops * s.validation for flops, s in fits) / energy_j


def test_one_callback_fitting_two_models_counts_each_fits_samples_at_its_models_flops(
        mlflow_experiment: str, tmp_path: Path) -> None:
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})])
    trainer = lightning.Trainer(max_epochs=1, default_root_dir=tmp_path, callbacks=[cb], **quiet_trainer_kwargs())
    with mlflow.start_run() as run:
        small = _fit(cb, 32, tmp_path, trainer=trainer)
        trainer.fit_loop.max_epochs = 2
        large = _fit(cb, 128, tmp_path, trainer=trainer)
    assert large[0] > 3 * small[0]
    metrics = MlflowClient().get_run(run.info.run_id).data.metrics
    assert metrics[schema.FLOP_PER_J] == pytest.approx(_expected_flop_per_j(run.info.run_id, [small, large]), rel=1e-6)
    assert_green_invariants(run.info.run_id, finished=False)


def test_two_trainers_in_the_users_run_count_each_fits_samples_at_its_models_flops(
        mlflow_experiment: str, tmp_path: Path) -> None:
    with mlflow.start_run() as run:
        small = _fit(GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})]), 32, tmp_path)
        second = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})])
        large = _fit(second, 128, tmp_path)
    metrics = MlflowClient().get_run(run.info.run_id).data.metrics
    assert metrics[schema.FLOP_PER_J] == pytest.approx(_expected_flop_per_j(run.info.run_id, [small, large]), rel=1e-6)
    # what a checkpoint (or the next callback in the run) goes on from: the run's FLOPs so far
    state = SessionState.from_dict(second.session.state_dict())
    assert state is not None and state.flops == pytest.approx(
        sum(3 * flops * s.train + flops * s.validation for flops, s in (small, large)), rel=1e-9)


def test_a_state_without_flops_counts_every_sample_at_the_current_models_flops() -> None:
    """A checkpoint written before the run's FLOPs were kept: the estimate it always was (every sample at the
    current model's figure), not zero for the earlier fits."""
    from mlflow_green.measure.readings import Measurement
    from mlflow_green.training.run_flops import RunFlops

    old = SessionState.from_dict({"version": 1, "run_id": "r", "total": Measurement(10.0).to_dict(),
                                  "samples": {"train": 100}, "last_step": 0})
    assert old is not None and old.flops is None
    flops = RunFlops.from_state(old.flops, old.samples)
    flops.begin_fit(old.samples)
    assert flops.end_fit(10.0, {"train": 150}) == 3 * 10.0 * 150
    assert RunFlops.from_state(None, {"test": 5}).earlier == 0.0  # evaluations only: no training FLOPs


def test_a_quantized_copy_logged_after_the_fit_keeps_its_flops_in_the_report(mlflow_experiment: str, tmp_path: Path) -> None:
    """``log_model(quantize_dynamic(model))`` on a model profiled on its first batch: the copy was inspected
    without an example input, so ``green/report.json`` lost the FLOPs (None, "FLOPs unknown") while the metric
    kept them. The fit's example input serves the copy too."""
    import json

    import torch

    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})])
    model = digits_classifier()
    model.example_input_array = None  # profiled on the first training batch
    trainer = lightning.Trainer(max_epochs=1, default_root_dir=tmp_path, callbacks=[cb], **quiet_trainer_kwargs())
    trainer.fit(model, *loaders())
    fitted_flops = cb.session.profile.flops_per_sample
    quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    profile = cb.log_model(quantized)
    assert profile is not None and profile.flops_per_sample == fitted_flops  # the same products, in int8
    path = MlflowClient().download_artifacts(cb.session.run_id, schema.REPORT_ARTIFACT, str(tmp_path / "report"))
    report = json.loads(Path(path).read_text())
    assert report["model"]["flops_per_sample"] == fitted_flops
    assert report["model"]["flops_per_sample"] == MlflowClient().get_run(cb.session.run_id).data.metrics[
        schema.MODEL_FLOPS_PER_SAMPLE]
