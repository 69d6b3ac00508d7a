"""The bounds on waiting for MLflow: arguments, then MLFLOW_GREEN_* variables, then defaults; bad values fail first."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from mlflow_green.errors import ConfigError
from mlflow_green.record.timeouts import RunTimeouts
from mlflow_green.training.session import TrainingSession


def test_arguments_beat_variables_which_beat_the_defaults() -> None:
    env = {"MLFLOW_GREEN_START_TIMEOUT_S": "0.5", "MLFLOW_GREEN_FLUSH_TIMEOUT_S": "7", "MLFLOW_GREEN_RETRY_MAX_S": "5"}
    assert RunTimeouts.resolve(environ={}) == RunTimeouts(2.0, 30.0, 60.0)
    assert RunTimeouts.resolve(environ=env) == RunTimeouts(0.5, 7.0, 5.0), "the older name still works"
    assert RunTimeouts.resolve(environ={**env, "MLFLOW_GREEN_END_TIMEOUT_S": "9"}).end_s == 9.0
    assert RunTimeouts.resolve(start_timeout_s=0, end_timeout_s=1, environ=env) == RunTimeouts(0.0, 1.0, 5.0)


def test_the_send_interval_comes_from_its_variable_and_a_bad_one_fails_first() -> None:
    assert RunTimeouts.resolve(environ={}).send_interval_s == 5.0
    assert RunTimeouts.resolve(environ={"MLFLOW_GREEN_SEND_INTERVAL_S": "0"}).send_interval_s == 0.0
    assert RunTimeouts.resolve(environ={"MLFLOW_GREEN_SEND_INTERVAL_S": " 1.5 "}).send_interval_s == 1.5
    for bad in ("-1", "soon", "nan", "1e9"):
        with pytest.raises(ConfigError, match="MLFLOW_GREEN_SEND_INTERVAL_S"):
            RunTimeouts.resolve(environ={"MLFLOW_GREEN_SEND_INTERVAL_S": bad})


@pytest.mark.parametrize("options", [{"start_timeout_s": -1}, {"end_timeout_s": "30"}, {"end_timeout_s": True}])
def test_the_callbacks_reject_bad_timeouts_at_construction(options: dict) -> None:
    """Both callbacks build their session with TrainingSession.for_callback."""
    with pytest.raises(ConfigError, match=next(iter(options))):
        TrainingSession.for_callback(
            "keras", quality_metric=None, max_energy_kwh=None, max_emissions_kg=None, live_metrics=None,
            inspect_model=True, log_report=True, run_name=None, **options,
        )


def test_a_local_store_is_waited_for_up_to_the_end_timeout_unless_a_start_timeout_was_chosen() -> None:
    default = RunTimeouts.resolve(environ={})
    assert default.start_for("sqlite:////tmp/x/mlflow.db") == 30.0 and default.start_for("./mlruns") == 30.0
    assert default.start_for("file:///tmp/mlruns") == 30.0
    assert default.start_for("http://127.0.0.1:5000") == 2.0 and default.start_for("postgresql://db/mlflow") == 2.0
    assert default.start_for(None) == 2.0 and default.start_for("sqlite:///:memory:") == 2.0
    chosen = RunTimeouts.resolve(environ={"MLFLOW_GREEN_START_TIMEOUT_S": "0"})
    assert chosen.start_for("sqlite:////tmp/x/mlflow.db") == 0.0
    assert RunTimeouts.resolve(start_timeout_s=1, environ={}).start_for("./mlruns") == 1.0
    assert RunTimeouts(start_s=0.5).start_for("./mlruns") == 0.5  # made by hand: as given


@pytest.fixture()
def made_store(tmp_path: Path) -> Path:
    """A sqlite store whose tables exist, made before the test runs (MLflow 2 configures logging from alembic's
    file as it makes them, which drops the handlers ``caplog`` installed for a test already running)."""
    import mlflow

    database = tmp_path / "store.db"
    mlflow.MlflowClient(f"sqlite:///{database}").search_experiments()
    return database


def test_a_sqlite_store_busy_for_longer_than_the_start_timeout_still_has_the_run_as_training_starts(
        made_store: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Another connection holds the database for 3 s (a fresh store makes its tables for as long on a busy
    machine): the block waits for its run rather than spooling its creation with a warning."""
    import mlflow

    import mlflow_green
    from mlflow_green.testing import FakeMeter

    database = made_store
    mlflow.set_tracking_uri(f"sqlite:///{database}")
    mlflow.set_experiment("busy")  # the tables exist
    holder = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(3.0, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        with caplog.at_level("WARNING", logger="mlflow_green"), mlflow_green.track(meters=[FakeMeter({"cpu:0": 10.0})]) as block:
            started_with = block.run_id
    finally:
        release.join()
        holder.close()
    assert started_with is not None  # created before the block's body ran
    assert not [r for r in caplog.records if "did not create the run" in r.getMessage()]
    assert mlflow.MlflowClient().get_run(started_with).info.status == "FINISHED"


def test_a_run_the_store_refuses_to_create_is_said_once_as_refused_not_as_late(
        made_store: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A deleted experiment (the store refuses the run for good): one warning for the refusal and one saying that
    nothing reaches MLflow — not 'did not create the run within 30 s (no answer yet)', nor one per write."""
    import mlflow

    import mlflow_green
    from mlflow_green.testing import FakeMeter

    mlflow.set_tracking_uri(f"sqlite:///{made_store}")
    experiment_id = mlflow.set_experiment("gone").experiment_id
    mlflow.MlflowClient().delete_experiment(experiment_id)
    with caplog.at_level("WARNING", logger="mlflow_green"):
        with mlflow_green.track(meters=[FakeMeter({"cpu:0": 10.0})]) as block:
            for step in range(3):
                block.log_step(step)
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "did not create the run within" in m]
    assert len([m for m in said if "refused a write" in m]) == 1
    assert len([m for m in said if "nothing reaches MLflow" in m and "deleted" in m]) == 1
