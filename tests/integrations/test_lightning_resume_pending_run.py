"""Resuming a checkpoint written while its MLflow run was not created yet (a fresh database, a slow server).

The checkpoint then cannot hold the run's id: it holds the run's creation token, by which the
resumed fit finds the run once MLflow created it — a new run starts at zero and is tagged
``green.resumed_from``, the same run goes on. Without that, the new run took the old run's energy.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

pytest.importorskip("lightning")

import lightning  # noqa: E402
import torch  # noqa: E402
from green_invariants import assert_green_invariants  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402


class _SaveAtTrainStart(lightning.Callback):
    """Saves a checkpoint as training starts (after GreenCallback began the fit)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_start(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        trainer.save_checkpoint(self.path)


def _trainer(callback: GreenCallback, max_epochs: int, checkpoint: Path | None = None) -> lightning.Trainer:
    callbacks = [callback] if checkpoint is None else [callback, _SaveAtTrainStart(checkpoint)]
    return lightning.Trainer(max_epochs=max_epochs, callbacks=callbacks, **quiet_trainer_kwargs())


@pytest.fixture()
def first_fit_on_a_fresh_store(fresh_store: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A fit on a database MLflow has not made yet (1-2 s to make), its run not waited for: a checkpoint
    saved as training starts is written before the run exists. Returns (its run id, that checkpoint)."""
    tmp_path = fresh_store
    train, val = loaders()
    first = GreenCallback()
    checkpoint = tmp_path / "at-start.ckpt"
    _trainer(first, 1, checkpoint).fit(digits_classifier(), train, val)
    monkeypatch.delenv("MLFLOW_GREEN_START_TIMEOUT_S")
    assert first.session.run_id is not None, "the run was created by the fit's end"
    state = torch.load(checkpoint, weights_only=False)["callbacks"]["GreenCallback"]
    assert state["run_id"] is None, "the checkpoint was written before the run was created"
    assert state["pending_run"]["token"] and state["total"]["energy_j"] > 0
    return first.session.run_id, checkpoint


def test_a_new_run_resumed_from_it_starts_at_zero_and_names_the_run_created_since(
    first_fit_on_a_fresh_store: tuple[str, Path],
) -> None:
    first_run, checkpoint = first_fit_on_a_fresh_store
    train, val = loaders()
    second = GreenCallback()
    _trainer(second, 2).fit(digits_classifier(), train, val, ckpt_path=str(checkpoint))
    assert second.session.run_id != first_run
    run = MlflowClient().get_run(second.session.run_id)
    assert run.data.tags[schema.TAG_RESUMED_FROM] == first_run
    assert run.data.metrics[schema.ENERGY_KWH] * 3.6e6 == pytest.approx(second.session.fit_total.energy_j, rel=1e-9)
    assert_green_invariants(run.info.run_id)


def test_the_same_run_resumed_from_it_goes_on_from_the_runs_latest_totals(first_fit_on_a_fresh_store: tuple[str, Path]) -> None:
    """The checkpoint was written as training started; the run went on past it (its epoch 0 logged): the resumed
    fit continues the run's latest totals (the first fit's whole energy) after its last step — one point per step."""
    first_run, checkpoint = first_fit_on_a_fresh_store
    carried_j = torch.load(checkpoint, weights_only=False)["callbacks"]["GreenCallback"]["total"]["energy_j"]
    first_total_j = MlflowClient().get_run(first_run).data.metrics[schema.ENERGY_KWH] * 3.6e6
    assert first_total_j > carried_j
    train, val = loaders()
    again = GreenCallback()
    with mlflow.start_run(run_id=first_run):
        _trainer(again, 2).fit(digits_classifier(), train, val, ckpt_path=str(checkpoint))
    run = MlflowClient().get_run(first_run)
    assert schema.TAG_RESUMED_FROM not in run.data.tags
    assert run.data.metrics[schema.ENERGY_KWH] * 3.6e6 == pytest.approx(first_total_j + again.session.fit_total.energy_j, rel=1e-6)
    hist = assert_green_invariants(first_run)
    assert [m.step for m in hist[schema.ENERGY_KWH]] == [0, 1, 2]


def test_a_run_that_cannot_be_found_is_not_taken_for_this_one(first_fit_on_a_fresh_store: tuple[str, Path], tmp_path: Path) -> None:
    _, checkpoint = first_fit_on_a_fresh_store
    content = torch.load(checkpoint, weights_only=False)
    content["callbacks"]["GreenCallback"]["pending_run"]["token"] = "0" * 32  # a run never created
    torch.save(content, tmp_path / "lost.ckpt")
    train, val = loaders()
    second = GreenCallback()
    _trainer(second, 2).fit(digits_classifier(), train, val, ckpt_path=str(tmp_path / "lost.ckpt"))
    run = MlflowClient().get_run(second.session.run_id)
    assert schema.TAG_RESUMED_FROM not in run.data.tags
    assert run.data.metrics[schema.ENERGY_KWH] * 3.6e6 == pytest.approx(second.session.fit_total.energy_j, rel=1e-9)
