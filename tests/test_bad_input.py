"""Every public entry point given wrong input: a clear ConfigError naming the argument, before
anything is measured or written — and unicode or HTML in names is stored as plain text."""

from __future__ import annotations

import importlib
import math

import mlflow
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

import mlflow_green
from mlflow_green import EnergyTracker
from mlflow_green.errors import ConfigError
from mlflow_green.record import schema
from mlflow_green.testing import FakeMeter

BAD_TRACKER_ARGUMENTS = [
    ({"region": 123}, "region"),
    ({"region": "<script>alert(1)</script>"}, "region"),
    ({"region": "日本"}, "region"),
    ({"pue": "1.2"}, "pue"),
    ({"pue": -1.0}, "PUE"),
    ({"pue": 1e308}, "PUE"),
    ({"pue": math.nan}, "PUE"),
    ({"sample_interval_s": 0}, "interval"),
    ({"sample_interval_s": 10**12}, "interval"),
    ({"meters": 123}, "meters"),
    ({"meters": ["rapl", "rapl"]}, "twice"),
    ({"meters": ["<b>x</b>"]}, "<b>x</b>"),
    ({"intensity_provider": 5}, "intensity_provider"),
    ({"intensity_provider": "no-such-provider"}, "no-such-provider"),
]


@pytest.mark.parametrize(("kwargs", "fragment"), BAD_TRACKER_ARGUMENTS)
def test_tracker_and_track_reject_bad_configuration_clearly(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        EnergyTracker(**kwargs)
    with pytest.raises(ConfigError):
        mlflow_green.track(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"run_name": 5}, "run_name"), ({"run_name": "  "}, "run_name"), ({"log_report": "yes"}, "log_report")],
)
def test_track_rejects_wrong_types_before_any_run_exists(mlflow_experiment: str, kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        mlflow_green.track(**kwargs)
    assert not MlflowClient().search_runs([mlflow_experiment]), "nothing is written half-way"


def test_unicode_and_html_in_names_are_kept_as_plain_text(mlflow_experiment: str) -> None:
    name = "<script>alert(1)</script> énergie 能源 🌱"
    with mlflow_green.track(run_name=name, meters=[FakeMeter({"cpu:0": 1.0, "ram:0": 1.0})]) as t:
        pass
    run = MlflowClient().get_run(t.run_id)
    assert run.info.run_name == name
    assert run.data.metrics[schema.ENERGY_KWH] > 0


@pytest.mark.parametrize("package", ["keras", "lightning", "transformers", "autolog"])
@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_energy_kwh": -1}, "max_energy_kwh"),
        ({"max_energy_kwh": "0.5"}, "max_energy_kwh"),
        ({"max_emissions_kg": math.inf}, "max_emissions_kg"),
        ({"quality_metric": 3}, "quality_metric"),
        ({"run_name": 5}, "run_name"),
        ({"live_metrics": "yes"}, "live_metrics"),
        ({"inspect_model": "no"}, "inspect_model"),
        ({"region": "Atlantis"}, "Atlantis"),
        ({"pue": 0.5}, "PUE"),
        ({"scope": "galaxy"}, "scope"),
        ({"scope": 1}, "scope"),
        ({"end_timeout_s": -1}, "end_timeout_s"),
    ],
)
def test_callbacks_reject_bad_options_at_construction(package: str, kwargs: dict, fragment: str) -> None:
    if package == "autolog":  # mlflow_green.autolog() checks the same options at the call, before any training
        with pytest.raises(ConfigError, match=fragment):
            mlflow_green.autolog(**kwargs)
        assert not mlflow_green.autologging.is_enabled()
        return
    pytest.importorskip(package)  # the framework's extra (the core suite runs without it)
    module = importlib.import_module(f"mlflow_green.integrations.{package}")
    with pytest.raises(ConfigError, match=fragment):
        module.GreenCallback(**kwargs)


@pytest.mark.parametrize("disable", ["no", "False", 1, None, []])
def test_autolog_disable_takes_only_true_or_false(disable: object) -> None:
    """A string from a config file or CLI flag ("no") would otherwise switch measuring off silently."""
    mlflow_green.autolog()
    try:
        with pytest.raises(ConfigError, match="disable must be True or False"):
            mlflow_green.autolog(disable=disable)  # type: ignore[arg-type]
        assert mlflow_green.autologging.is_enabled()  # left as it was
    finally:
        mlflow_green.autolog(disable=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pue=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=8), st.none(), st.booleans()),
    interval=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.none()),
    region=st.one_of(st.text(max_size=12), st.none(), st.integers()),
)
def test_any_tracker_configuration_is_accepted_or_rejected_with_config_error(pue, interval, region) -> None:  # noqa: ANN001
    try:
        tracker = EnergyTracker(pue=pue, sample_interval_s=interval, region=region)
    except ConfigError:
        return
    assert 1.0 <= tracker.config.pue <= 10.0
    assert 0 < tracker.config.sample_interval_s <= 60
    assert tracker.config.carbon.intensity_g_per_kwh >= 0


def test_a_bad_environment_variable_names_itself(monkeypatch: pytest.MonkeyPatch, mlflow_experiment: str) -> None:
    monkeypatch.setenv("MLFLOW_GREEN_SAMPLE_INTERVAL_S", "fast")
    with pytest.raises(ConfigError, match="MLFLOW_GREEN_SAMPLE_INTERVAL_S"):
        mlflow_green.track()
    assert mlflow.active_run() is None
