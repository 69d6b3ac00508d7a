"""The bounds on waiting for MLflow: arguments, then MLFLOW_GREEN_* variables, then defaults; bad values fail first."""

from __future__ import annotations

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
