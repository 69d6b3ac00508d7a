"""Evaluations alone with one Lightning GreenCallback: one run of them all, its report showing no energy twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

pytest.importorskip("lightning")

import lightning  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402


def _report(run_id: str, tmp_path: Path) -> dict[str, Any]:
    path = MlflowClient().download_artifacts(run_id, schema.REPORT_ARTIFACT, str(tmp_path / run_id))
    return json.loads(Path(path).read_text())


def test_evaluations_alone_share_a_run_whose_report_totals_them_all_once(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    cb = GreenCallback()
    model = digits_classifier()
    trainer = lightning.Trainer(callbacks=[cb], **quiet_trainer_kwargs())
    trainer.validate(model, val)
    run_id = cb.session.run_id
    trainer.test(model, val)
    trainer.predict(model, val)
    assert cb.session.run_id == run_id

    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    logged_j = {stage: run.data.metrics[schema.phase_energy_key(stage)] * 3.6e6 for stage in ("validate", "test", "predict")}
    report = _report(run_id, tmp_path)
    assert report["evaluations_only"] is True
    for stage, energy_j in logged_j.items():
        assert energy_j > 0
        assert report["phases"][stage]["energy_j"] == pytest.approx(energy_j, rel=1e-6)
        assert report["samples"][stage] == 397
    # every evaluation in the totals, once: no fit phase holds them again
    assert report["totals"]["energy_j"] == pytest.approx(sum(logged_j.values()), rel=1e-6)
    fit_phases_j = {p: report["phases"][p]["energy_j"] for p in ("train", "validation", "data", "other")}
    assert fit_phases_j == pytest.approx(dict.fromkeys(fit_phases_j, 0.0), abs=1e-9)

    trainer2 = lightning.Trainer(max_epochs=1, callbacks=[cb], **quiet_trainer_kwargs())
    trainer2.fit(model, train, val)  # a fit after them: a run of its own, its report a fit's
    assert cb.session.run_id != run_id
    fit_report = _report(cb.session.run_id, tmp_path)
    assert "evaluations_only" not in fit_report and fit_report["phases"]["train"]["energy_j"] > 0
    assert _report(run_id, tmp_path)["totals"]["energy_j"] == pytest.approx(report["totals"]["energy_j"], rel=1e-12)
