"""mlflow_green.autolog() and Lightning (lightning.pytorch and pytorch_lightning)."""

from __future__ import annotations

import mlflow
import pytest

lightning = pytest.importorskip("lightning")

from autolog_fixtures import autolog_off, runs_of, steps  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402

import mlflow_green  # noqa: E402
from mlflow_green.integrations._lightning_impl import GreenCallbackMixin  # noqa: E402
from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402

_off = pytest.fixture(autouse=True)(autolog_off)


def _greens(trainer) -> list:
    return [cb for cb in trainer.callbacks if isinstance(cb, GreenCallbackMixin)]


def test_fit_and_test_are_measured_with_no_callback_in_the_code(mlflow_experiment: str, tmp_path) -> None:
    mlflow_green.autolog(max_energy_kwh=10.0)
    train, val = loaders()
    kwargs = {**quiet_trainer_kwargs(), "enable_checkpointing": True, "default_root_dir": str(tmp_path)}
    trainer = lightning.Trainer(max_epochs=2, **kwargs)
    model = digits_classifier()
    trainer.fit(model, train, val)
    trainer.validate(model, val, verbose=False)
    trainer.test(model, val, verbose=False)
    [green] = _greens(trainer)
    assert green.session.budget.max_energy_kwh == 10.0
    [run] = runs_of(mlflow_experiment)
    assert run.info.status == "FINISHED"
    assert steps(run.info.run_id, schema.EPOCH_ENERGY_KWH) == [0, 1]
    assert schema.ENERGY_TEST_KWH in run.data.metrics and run.data.tags[schema.TAG_QUALITY_METRIC] == "val_acc"
    # Lightning keeps checkpoint callbacks last, so that they save the other callbacks' latest state
    assert type(trainer.callbacks[-1]).__name__ == "ModelCheckpoint"


def test_a_trainer_built_before_autolog_gets_it_at_fit_and_a_users_callback_is_kept(mlflow_experiment: str) -> None:
    train, val = loaders()
    early = lightning.Trainer(max_epochs=1, **quiet_trainer_kwargs())
    mine = GreenCallback(run_name="mine")
    own = lightning.Trainer(max_epochs=1, callbacks=[mine], **quiet_trainer_kwargs())
    mlflow_green.autolog()
    assert _greens(early) == []
    early.fit(digits_classifier(), train, val)
    assert len(_greens(early)) == 1
    own.fit(digits_classifier(), train, val)
    assert _greens(own) == [mine]
    first, second = runs_of(mlflow_experiment)
    assert schema.ENERGY_KWH in first.data.metrics and second.info.run_name == "mine"


def test_the_standalone_pytorch_lightning_package(mlflow_experiment: str) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    from mlflow_green.integrations.pytorch_lightning import GreenCallback as PLGreenCallback

    mlflow_green.autolog()
    train, val = loaders()
    trainer = pl.Trainer(max_epochs=1, **quiet_trainer_kwargs())
    trainer.fit(digits_classifier("pytorch_lightning"), train, val)
    assert [type(cb) for cb in _greens(trainer)] == [PLGreenCallback]
    [run] = runs_of(mlflow_experiment)
    assert schema.ENERGY_KWH in run.data.metrics


def test_disable_leaves_new_trainers_alone(mlflow_experiment: str) -> None:
    fit = lightning.Trainer.fit
    mlflow_green.autolog()
    mlflow_green.autolog(disable=True)
    assert lightning.Trainer.fit is fit
    trainer = lightning.Trainer(max_epochs=1, **quiet_trainer_kwargs())
    assert _greens(trainer) == []
    assert mlflow.active_run() is None


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
@pytest.mark.parametrize("built", ["before", "after"])
def test_an_evaluation_alone_is_a_complete_measured_run(stage: str, built: str, mlflow_experiment: str, tmp_path) -> None:
    """``trainer.validate`` / ``test`` / ``predict`` with no fit, on a trainer built before or after ``autolog()``."""
    import json
    from pathlib import Path

    from mlflow import MlflowClient

    _, val = loaders()
    if built == "before":
        trainer = lightning.Trainer(**quiet_trainer_kwargs())
        mlflow_green.autolog()
    else:
        mlflow_green.autolog()
        trainer = lightning.Trainer(**quiet_trainer_kwargs())
    kwargs = {} if stage == "predict" else {"verbose": False}
    getattr(trainer, stage)(digits_classifier(), val, **kwargs)
    [green] = _greens(trainer)
    [run] = runs_of(mlflow_experiment)
    assert run.info.run_id == green.session.run_id and run.info.status == "FINISHED"
    assert run.data.metrics[schema.phase_energy_key(stage)] > 0
    assert run.data.metrics[schema.phase_energy_per_sample_key(stage)] > 0
    for tag in (schema.TAG_METERS, schema.TAG_ESTIMATED, schema.TAG_VERSION, schema.TAG_SCOPE):
        assert run.data.tags.get(tag), tag
    report = json.loads(Path(MlflowClient().download_artifacts(run.info.run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert report["status"] == "FINISHED" and report["samples"][stage] == 397
    assert mlflow.active_run() is None
