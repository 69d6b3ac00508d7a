"""GreenConfig: precedence (argument > environment > default), validation messages, properties."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_green.carbon import WORLD, CarbonIntensity, offline_intensity
from mlflow_green.config import (
    ENV_INTENSITY_PROVIDER,
    ENV_METERS,
    ENV_PUE,
    ENV_REGION,
    ENV_SAMPLE_INTERVAL_S,
    GreenConfig,
)
from mlflow_green.errors import ConfigError, UnknownMeterError, UnknownRegionError
from mlflow_green.testing import (
    FakeIntensityProvider,
    FakeMeter,
    registered_intensity_providers,
    registered_meters,
)

FIELDS = ("region", "pue", "meters", "sample_interval_s", "intensity_provider", "scope")


@pytest.fixture()
def fake_meters() -> Iterator[None]:
    """Two fake meters registered as a third-party plugin."""
    with registered_meters(
        partial(FakeMeter, {"gpu:GPU-0": 100.0}, name="fake-gpu"),
        partial(FakeMeter, {"cpu:0": 10.0}, name="fake-cpu"),
    ):
        yield


# --- precedence --------------------------------------------------------------------------------


def test_defaults() -> None:
    cfg = GreenConfig.resolve(environ={})
    assert cfg.region is None
    assert cfg.carbon.region == WORLD
    assert (cfg.pue, cfg.meters, cfg.sample_interval_s, cfg.intensity_provider) == (1.0, None, 0.1, None)
    assert dict(cfg.sources) == dict.fromkeys(FIELDS, "default")


def test_environment_beats_defaults(fake_meters: None) -> None:
    environ = {
        ENV_REGION: " de ",
        ENV_PUE: "1.3",
        ENV_METERS: "fake-gpu, fake-cpu",
        ENV_SAMPLE_INTERVAL_S: "0.5",
    }
    cfg = GreenConfig.resolve(environ=environ)
    assert (cfg.region, cfg.carbon.region_name) == ("DEU", "Germany")
    assert cfg.pue == 1.3
    assert cfg.meters == ("fake-gpu", "fake-cpu")
    assert cfg.sample_interval_s == 0.5
    assert cfg.sources["region"] == "env MLFLOW_GREEN_REGION"
    assert cfg.sources["pue"] == "env MLFLOW_GREEN_PUE"
    assert cfg.sources["meters"] == "env MLFLOW_GREEN_METERS"
    assert cfg.sources["sample_interval_s"] == "env MLFLOW_GREEN_SAMPLE_INTERVAL_S"
    assert cfg.sources["intensity_provider"] == "default"


def test_arguments_beat_environment(fake_meters: None) -> None:
    environ = {ENV_REGION: "DEU", ENV_PUE: "1.3", ENV_METERS: "fake-gpu", ENV_SAMPLE_INTERVAL_S: "0.5"}
    cfg = GreenConfig.resolve(region="FR", pue=1.1, meters=["fake-cpu"], sample_interval_s=2, environ=environ)
    assert (cfg.region, cfg.pue, cfg.meters, cfg.sample_interval_s) == ("FRA", 1.1, ("fake-cpu",), 2.0)
    assert {cfg.sources[f] for f in ("region", "pue", "meters", "sample_interval_s")} == {"argument"}


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_REGION, "US-CA")
    monkeypatch.setenv(ENV_PUE, "1.25")
    cfg = GreenConfig.resolve()
    assert (cfg.region, cfg.pue) == ("US-CA", 1.25)


def test_empty_environment_variables_count_as_unset() -> None:
    cfg = GreenConfig.resolve(environ={ENV_REGION: "", ENV_PUE: "  ", ENV_METERS: "", ENV_INTENSITY_PROVIDER: ""})
    assert dict(cfg.sources) == dict.fromkeys(FIELDS, "default")
    assert cfg.carbon.region == WORLD


def test_region_is_resolved_at_construction() -> None:
    cfg = GreenConfig(region="fr")
    assert cfg.region == "FRA" and cfg.carbon == offline_intensity("FRA")
    assert cfg.sources["region"] == "argument" and cfg.sources["pue"] == "default"


def test_describe_is_json_ready() -> None:
    cfg = GreenConfig.resolve(region="FRA", pue=1.2, environ={ENV_SAMPLE_INTERVAL_S: "1"})
    described = json.loads(json.dumps(cfg.describe()))
    assert described == {
        "region": "FRA",
        "region_name": "France",
        "intensity_g_per_kwh": cfg.carbon.intensity_g_per_kwh,
        "intensity_source": cfg.carbon.source,
        "intensity_method": "offline",
        "pue": 1.2,
        "meters": None,
        "sample_interval_s": 1.0,
        "intensity_provider": None,
        "scope": "process",
        "sources": {
            "region": "argument",
            "pue": "argument",
            "meters": "default",
            "sample_interval_s": "env MLFLOW_GREEN_SAMPLE_INTERVAL_S",
            "intensity_provider": "default",
            "scope": "default",
        },
    }
    assert GreenConfig.resolve(environ={}).describe()["region"] == WORLD


def test_frozen_hashable_and_replace() -> None:
    cfg = GreenConfig.resolve(region="FRA", environ={})
    assert hash(cfg) == hash(GreenConfig.resolve(region="fr", environ={}))
    assert cfg == GreenConfig.resolve(region="FRA", environ={})
    with pytest.raises(AttributeError):
        cfg.pue = 2.0  # type: ignore[misc]
    changed = cfg.replace(pue=1.5, region="DEU")
    assert (changed.pue, changed.carbon.region, changed.sources["pue"]) == (1.5, "DEU", "argument")
    with pytest.raises(ConfigError):
        cfg.replace(pue=0.5)


def test_injected_carbon_intensity_is_kept() -> None:
    carbon = CarbonIntensity("FRA", "France", 1.0, "test")
    assert GreenConfig(region="FRA", carbon=carbon).carbon is carbon


# --- PUE ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.5, 0.0, -1.2, 10.5, 1e308, math.nan, math.inf, -math.inf])
def test_pue_out_of_range_argument(bad: float) -> None:
    with pytest.raises(ConfigError) as info:
        GreenConfig.resolve(pue=bad, environ={})
    message = str(info.value)
    assert f"pue={bad!r}" in message and "argument pue=" in message
    assert "from 1.0 to 10" in message and "1.1-1.6" in message


@pytest.mark.parametrize("bad", [True, "1.2", object(), [1.2], 10**400])
def test_pue_wrong_type_argument(bad: object) -> None:
    with pytest.raises(ConfigError, match="pue"):
        GreenConfig.resolve(pue=bad, environ={})  # type: ignore[arg-type]


def test_pue_integer_accepted() -> None:
    assert GreenConfig.resolve(pue=2, environ={}).pue == 2.0


@pytest.mark.parametrize("raw", ["abc", "1,2", "nan", "inf", "0.9", "-1"])
def test_pue_from_environment_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        GreenConfig.resolve(environ={ENV_PUE: raw})
    assert "MLFLOW_GREEN_PUE" in str(info.value) and repr(raw) in str(info.value)


# --- sample interval ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -0.1, 61.0, math.nan, math.inf, False])
def test_sample_interval_argument(bad: float) -> None:
    with pytest.raises(ConfigError) as info:
        GreenConfig.resolve(sample_interval_s=bad, environ={})
    assert "sample_interval_s" in str(info.value) and "argument sample_interval_s=" in str(info.value)
    assert "> 0 and <= 60" in str(info.value)


def test_sample_interval_upper_bound_is_inclusive() -> None:
    assert GreenConfig.resolve(sample_interval_s=60, environ={}).sample_interval_s == 60.0


@pytest.mark.parametrize("raw", ["fast", "0", "1e9"])
def test_sample_interval_from_environment_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match=ENV_SAMPLE_INTERVAL_S):
        GreenConfig.resolve(environ={ENV_SAMPLE_INTERVAL_S: raw})


# --- meters ------------------------------------------------------------------------------------


def test_meters_as_string_or_sequence(fake_meters: None) -> None:
    assert GreenConfig.resolve(meters="fake-gpu,fake-cpu", environ={}).meters == ("fake-gpu", "fake-cpu")
    assert GreenConfig.resolve(meters=("fake-cpu",), environ={}).meters == ("fake-cpu",)


def test_unknown_meter_lists_registered(fake_meters: None) -> None:
    with pytest.raises(UnknownMeterError) as info:
        GreenConfig.resolve(meters="fake-gpuu", environ={})
    message = str(info.value)
    assert "'fake-gpuu'" in message and "Did you mean 'fake-gpu'" in message
    assert "fake-cpu" in message and "argument meters=" in message and "mlflow-green doctor" in message


def test_unknown_meter_from_environment(fake_meters: None) -> None:
    with pytest.raises(UnknownMeterError, match="environment variable MLFLOW_GREEN_METERS"):
        GreenConfig.resolve(environ={ENV_METERS: "fake-gpu,nope"})


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ("fake-gpu,fake-gpu", "listed twice"),
        ("fake-gpu,,fake-cpu", "non-empty"),
        ([], "at least one"),
        (["fake-gpu", 3], "non-empty string"),
        (42, "comma-separated"),
        (b"fake-gpu", "comma-separated"),
    ],
)
def test_bad_meters(fake_meters: None, bad: object, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        GreenConfig.resolve(meters=bad, environ={})  # type: ignore[arg-type]


# --- region ------------------------------------------------------------------------------------


def test_unknown_region_from_argument() -> None:
    with pytest.raises(UnknownRegionError) as info:
        GreenConfig.resolve(region="Frnace", environ={})
    message = str(info.value)
    assert "argument region=" in message and "FRA (France)" in message
    assert "mlflow-green regions" in message and "MLFLOW_GREEN_REGION" in message


def test_unknown_region_from_environment() -> None:
    with pytest.raises(UnknownRegionError, match="from environment variable MLFLOW_GREEN_REGION"):
        GreenConfig.resolve(environ={ENV_REGION: "Germny"})


def test_region_wrong_type() -> None:
    with pytest.raises(ConfigError, match="expected a region code"):
        GreenConfig.resolve(region=49, environ={})  # type: ignore[arg-type]


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_region_argument_is_refused_and_a_blank_variable_is_unset(blank: str) -> None:
    with pytest.raises(ConfigError, match="expected a region code .*no region"):
        GreenConfig.resolve(region=blank, environ={})
    assert GreenConfig.resolve(environ={ENV_REGION: blank}).carbon.region == WORLD


# --- intensity provider ------------------------------------------------------------------------


def test_provider_from_environment() -> None:
    with registered_intensity_providers(partial(FakeIntensityProvider, {"FRA": 12.0}, name="grid")):
        cfg = GreenConfig.resolve(environ={ENV_REGION: "FR", ENV_INTENSITY_PROVIDER: "grid"})
    assert (cfg.intensity_provider, cfg.carbon.intensity_g_per_kwh, cfg.carbon.method) == ("grid", 12.0, "grid")
    assert cfg.sources["intensity_provider"] == "env MLFLOW_GREEN_INTENSITY_PROVIDER"


def test_unknown_provider_names_origin_and_registered() -> None:
    with registered_intensity_providers(partial(FakeIntensityProvider, name="grid")):
        with pytest.raises(ConfigError) as info:
            GreenConfig.resolve(environ={ENV_INTENSITY_PROVIDER: "electricitymaps"})
    message = str(info.value)
    assert "'electricitymaps'" in message and "MLFLOW_GREEN_INTENSITY_PROVIDER" in message and "grid" in message


def test_failing_provider_falls_back_at_construction() -> None:
    with registered_intensity_providers(partial(FakeIntensityProvider, name="grid", fail="timeout")):
        cfg = GreenConfig.resolve(region="DEU", intensity_provider="grid", environ={})
    assert cfg.carbon.source.startswith("offline fallback:")
    assert cfg.carbon.intensity_g_per_kwh == offline_intensity("DEU").intensity_g_per_kwh


# --- properties --------------------------------------------------------------------------------

finite_pue = st.floats(min_value=1.0, max_value=10.0, allow_nan=False) | st.integers(1, 10)


@settings(deadline=None)
@given(finite_pue)
def test_property_any_number_from_one_to_ten_is_a_pue(pue: float) -> None:
    assert GreenConfig.resolve(pue=pue, environ={}).pue == float(pue)


bad_pue = (
    st.floats().filter(lambda x: not (math.isfinite(x) and 1.0 <= x <= 10.0))
    | st.integers(max_value=0)
    | st.integers(min_value=11)
    | st.booleans()
    | st.text()
    | st.lists(st.floats(), max_size=2)
    | st.complex_numbers()
    | st.just(object())
)


@settings(deadline=None)
@given(bad_pue)
def test_property_any_other_pue_is_a_config_error(pue: object) -> None:
    with pytest.raises(ConfigError):
        GreenConfig.resolve(pue=pue, environ={})  # type: ignore[arg-type]


region_like = st.from_regex(r"\A\s*((US|USA|CA|CAN)[-_ ])?[A-Za-zé ]{0,12}\s*\Z") | st.text(max_size=40)


@settings(deadline=None, max_examples=300)
@given(region_like, st.booleans())
def test_property_any_region_text_resolves_or_is_unknown(region: str, from_env: bool) -> None:
    kwargs = {"environ": {ENV_REGION: region}} if from_env else {"region": region, "environ": {}}
    if not from_env and not region.strip():  # a blank argument is refused (a blank variable is unset)
        with pytest.raises(ConfigError):
            GreenConfig.resolve(**kwargs)  # type: ignore[arg-type]
        return
    try:
        cfg = GreenConfig.resolve(**kwargs)  # type: ignore[arg-type]
    except UnknownRegionError:
        return
    assert cfg.carbon.intensity_g_per_kwh >= 0
    assert cfg.carbon.region == WORLD or cfg.region == cfg.carbon.region


@settings(deadline=None, max_examples=300)
@given(st.text(), st.text())
def test_property_env_numbers_never_raise_anything_but_config_error(pue: str, interval: str) -> None:
    try:
        cfg = GreenConfig.resolve(environ={ENV_PUE: pue, ENV_SAMPLE_INTERVAL_S: interval})
    except ConfigError:
        return
    assert math.isfinite(cfg.pue) and 1.0 <= cfg.pue <= 10.0
    assert 0 < cfg.sample_interval_s <= 60


def test_scope_defaults_to_process_and_reads_the_environment() -> None:
    assert GreenConfig.resolve(environ={}).scope == "process"
    cfg = GreenConfig.resolve(environ={"MLFLOW_GREEN_SCOPE": " Machine "})
    assert (cfg.scope, cfg.sources["scope"]) == ("machine", "env MLFLOW_GREEN_SCOPE")


def test_an_unknown_scope_fails_at_construction_naming_its_origin() -> None:
    with pytest.raises(ConfigError, match=r"MLFLOW_GREEN_SCOPE.*'process'.*'machine'"):
        GreenConfig.resolve(environ={"MLFLOW_GREEN_SCOPE": "rank"})
