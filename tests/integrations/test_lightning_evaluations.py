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
from mlflow_green.testing import FakeMeter  # noqa: E402


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


def test_evaluations_after_a_fit_whose_server_is_down_go_into_its_spooled_run(mlflow_experiment: str, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The fit's run is not created (its server is down): ``test`` and ``predict`` after it are kept for that run
    (one spool file, one run to create), not for a run of their own."""
    import mlflow

    from mlflow_green.record.spool_format import parse_entries, spool_paths
    from mlflow_green.testing.server import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv("MLFLOW_GREEN_START_TIMEOUT_S", "0")
    monkeypatch.setenv("MLFLOW_GREEN_END_TIMEOUT_S", "0.5")
    mlflow.set_tracking_uri(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    train, val = loaders()
    green = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})])
    trainer = lightning.Trainer(callbacks=[green], **{**quiet_trainer_kwargs(), "max_epochs": 2, "limit_train_batches": 3})
    model = digits_classifier()
    trainer.fit(model, train, val)
    trainer.test(model, val)
    trainer.predict(model, val)
    [spooled] = spool_paths(tmp_path / "green-spool")
    entries = parse_entries(spooled.read_bytes()).entries
    assert [e["op"] for e in entries].count("create") == 1
    keys = {row[0] for e in entries if e["op"] == "metrics" for row in e["metrics"]}
    assert {schema.ENERGY_KWH, schema.ENERGY_TEST_KWH, schema.ENERGY_PREDICT_KWH} <= keys


def test_evaluations_after_a_fit_logged_beside_an_active_run_go_into_the_fits_run(mlflow_experiment: str) -> None:
    """The user's run active through a fit that logged beside it — into the ``MLFlowLogger``'s run, or into a child run
    of a ``track()`` block's — then ``test`` / ``predict``: into the fit's run (they went into the user's run, or a
    third run). A run the user starts after the fit does get the evaluation."""
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger

    import mlflow_green

    client, (train, val), model = MlflowClient(), loaders(), digits_classifier()
    kwargs = {**quiet_trainer_kwargs(), "max_epochs": 1, "limit_train_batches": 3}
    with mlflow.start_run() as users:
        green = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
        logger = MLFlowLogger(experiment_name=client.get_experiment(mlflow_experiment).name, tracking_uri=mlflow.get_tracking_uri())
        trainer = lightning.Trainer(callbacks=[green], **{**kwargs, "logger": logger})
        trainer.fit(model, train, val)
        assert green.session.run_id == logger.run_id != users.info.run_id
        trainer.test(model, val)
        trainer.predict(model, val)
        assert green.session.run_id == logger.run_id
    metrics = client.get_run(logger.run_id).data.metrics
    assert {schema.ENERGY_TRAIN_KWH, schema.ENERGY_TEST_KWH, schema.ENERGY_PREDICT_KWH} <= set(metrics), metrics
    assert not [key for key in client.get_run(users.info.run_id).data.metrics if key.startswith("green/")]
    with mlflow.start_run() as later:  # started after the fit: the evaluation goes into it
        trainer.test(model, val)
    assert schema.ENERGY_TEST_KWH in client.get_run(later.info.run_id).data.metrics

    with mlflow_green.track(meters=[FakeMeter({"cpu:0": 50.0})]) as block:
        green = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
        trainer = lightning.Trainer(callbacks=[green], **kwargs)
        trainer.fit(model, train, val)
        fit_run = green.session.run_id
        trainer.test(model, val)
        assert green.session.run_id == fit_run
    child = client.get_run(fit_run)
    assert child.data.tags.get("mlflow.parentRunId") == block.run_id, child.data.tags
    assert {schema.ENERGY_TRAIN_KWH, schema.ENERGY_TEST_KWH} <= set(child.data.metrics)
    runs = client.search_runs([mlflow_experiment], filter_string=f"tags.mlflow.parentRunId = '{block.run_id}'")
    assert [run.info.run_id for run in runs] == [fit_run]  # no third run for the test


def test_evaluations_go_back_into_the_fits_run_once_the_users_later_run_has_ended(mlflow_experiment: str, tmp_path: Path) -> None:
    """fit (its own run) -> ``test`` in a run the user starts after it -> that run ends -> ``test`` with no run active,
    and ``predict`` with the fit's run made active again: into the fit's run, its totals going on (they stayed in the
    user's ended run). A fit inside the user's run, then a nested run of the user's: back into the fit's once it ends."""
    import mlflow

    client, (train, val), model = MlflowClient(), loaders(), digits_classifier()
    kwargs = {**quiet_trainer_kwargs(), "max_epochs": 1, "limit_train_batches": 3}
    green = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    trainer = lightning.Trainer(callbacks=[green], **kwargs)
    trainer.fit(model, train, val)
    fit_run = green.session.run_id
    with mlflow.start_run() as later:
        trainer.test(model, val)
    trainer.test(model, val)
    assert green.session.run_id == fit_run
    with mlflow.start_run(run_id=fit_run):  # the fit's run active again
        trainer.predict(model, val)
    assert green.session.run_id == fit_run
    tests = sorted(client.get_metric_history(fit_run, schema.ENERGY_TEST_KWH), key=lambda m: m.step)
    assert len(tests) == 1 and tests[0].value > 0
    assert schema.ENERGY_PREDICT_KWH in client.get_run(fit_run).data.metrics
    samples = _report(fit_run, tmp_path)["samples"]
    assert samples["test"] == samples["predict"] == len(val.dataset), samples
    assert _report(later.info.run_id, tmp_path)["samples"] == {"test": len(val.dataset)}
    assert len(client.get_metric_history(later.info.run_id, schema.ENERGY_TEST_KWH)) == 1

    with mlflow.start_run() as users:
        green = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
        trainer = lightning.Trainer(callbacks=[green], **kwargs)
        trainer.fit(model, train, val)
        assert green.session.run_id == users.info.run_id
        with mlflow.start_run(nested=True) as child:
            trainer.test(model, val)
        trainer.test(model, val)
        assert green.session.run_id == users.info.run_id
    assert len(client.get_metric_history(users.info.run_id, schema.ENERGY_TEST_KWH)) == 1
    assert len(client.get_metric_history(child.info.run_id, schema.ENERGY_TEST_KWH)) == 1
    assert client.get_run(users.info.run_id).info.status == "FINISHED"


def test_one_callback_given_to_two_trainers_in_turn_logs_each_test_into_its_trainers_logger_run(
        mlflow_experiment: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Trainer A's ``test`` after Trainer B's fit, one callback: the evaluation kept the run bound last (B's) and its
    energy went there, while Lightning's ``test_*`` metrics went into A's MLFlowLogger's run."""
    import logging

    import mlflow
    from green_invariants import assert_green_invariants
    from lightning.pytorch.loggers import MLFlowLogger

    uri, (train, val) = mlflow.get_tracking_uri(), loaders()
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    loggers = {name: MLFlowLogger(experiment_name="in-turn", tracking_uri=uri, run_name=name,
                                  artifact_location=(tmp_path / name).as_uri()) for name in ("A", "B")}
    trainers = {name: lightning.Trainer(max_epochs=1, callbacks=[cb], **{**quiet_trainer_kwargs(), "logger": loggers[name]})
                for name in ("A", "B")}
    model_a = digits_classifier()
    trainers["A"].fit(model_a, train, val)
    trainers["B"].fit(digits_classifier(), train, val)
    trainers["A"].test(model_a, val)
    client, test_key = MlflowClient(), schema.phase_energy_key("test")
    metrics = {name: client.get_run(loggers[name].run_id).data.metrics for name in ("A", "B")}
    assert "test_acc" in metrics["A"] and test_key in metrics["A"]
    assert test_key not in metrics["B"]
    trainers["B"].test(digits_classifier(), val)  # and back to B's
    assert test_key in client.get_run(loggers["B"].run_id).data.metrics
    for name in ("A", "B"):
        assert_green_invariants(loggers[name].run_id, finished=False)  # the loggers' runs: Lightning ends them
    two = lightning.Trainer(callbacks=[cb], **{**quiet_trainer_kwargs(), "logger": [loggers["A"], loggers["B"]]})
    with caplog.at_level(logging.WARNING, logger="mlflow_green"):
        two.test(model_a, val)
        two.validate(model_a, val)
    assert len([r for r in caplog.records if "2 MLFlowLoggers" in r.getMessage()]) == 1  # once per Trainer



def test_a_fit_in_a_child_of_the_loggers_run_and_the_evaluation_after_it_share_that_child(mlflow_experiment: str) -> None:
    """The MLFlowLogger's run held a ``track()`` block's figures, so the fit got a child run of it — not marked as one
    (the logger's run is not MLflow's active run, whose child it was made); and the ``test`` after the fit took the
    logger's run for another than the fit's and made a second run."""
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger

    import mlflow_green

    with mlflow_green.track(meters=[FakeMeter({"cpu:0": 50.0})]) as block:
        pass
    cb, (train, val) = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})]), loaders()
    mlf_logger = MLFlowLogger(tracking_uri=mlflow.get_tracking_uri(), run_id=block.run_id)
    trainer = lightning.Trainer(max_epochs=1, callbacks=[cb], **{**quiet_trainer_kwargs(), "logger": mlf_logger})
    model = digits_classifier()
    trainer.fit(model, train, val)
    fit_run = cb.session.run_id
    trainer.test(model, val)
    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    children = client.search_runs(experiments, f"tags.mlflow.parentRunId = '{block.run_id}'")
    assert [run.info.run_id for run in children] == [fit_run] and cb.session.run_id == fit_run
    assert schema.phase_energy_key("test") in client.get_run(fit_run).data.metrics
