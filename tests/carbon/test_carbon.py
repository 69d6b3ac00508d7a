"""Carbon intensity: the offline table against CodeCarbon's bundled files, providers, fallback."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import math
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from mlflow_green.carbon import (
    WORLD,
    CarbonIntensity,
    IntensityProvider,
    known_regions,
    offline_intensity,
    resolve_intensity,
)
from mlflow_green.errors import ConfigError, UnknownRegionError
from mlflow_green.testing import FakeIntensityProvider, registered_intensity_providers

REPO_ROOT = Path(__file__).resolve().parents[1]


def _bundled(*parts: str) -> Any:
    spec = importlib.util.find_spec("codecarbon")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations)), "data", "private_infra", *parts)
    return json.loads(path.read_text(encoding="utf-8"))


CODECARBON_VERSION = importlib.metadata.version("codecarbon")


# --- countries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "iso3"), [("FRA", "FRA"), ("DEU", "DEU"), ("FR", "FRA"), ("de", "DEU")])
def test_country_equals_bundled_value(code: str, iso3: str) -> None:
    row = _bundled("global_energy_mix.json")[iso3]
    ci = offline_intensity(code)
    assert ci.region == iso3
    assert ci.region_name == row["country_name"]
    assert ci.intensity_g_per_kwh == row["carbon_intensity"]
    assert ci.method == "offline"
    assert ci.source == f"codecarbon {CODECARBON_VERSION} global_energy_mix.json (Our World in Data, {row['year']})"


@pytest.mark.parametrize("spelling", ["fra", " FRA ", "\tfr\n", "France", "FRANCE"])
def test_country_spellings(spelling: str) -> None:
    assert offline_intensity(spelling).region == "FRA"


def test_two_letter_code_is_a_country_not_a_state() -> None:
    assert offline_intensity("CA").region == "CAN"
    assert offline_intensity("US").region == "USA"


# --- US states and Canadian provinces ----------------------------------------------------------


@pytest.mark.parametrize("spelling", ["US-CA", "us-ca", "USA-CA", "USA_CA", "California", " california ", "US California"])
def test_us_state(spelling: str) -> None:
    lbs_per_mwh = _bundled("2023", "usa_emissions.json")["california"]["emissions"]
    ci = offline_intensity(spelling)
    assert ci.region == "US-CA"
    assert ci.region_name == "California, United States"
    assert ci.intensity_g_per_kwh == pytest.approx(lbs_per_mwh * 0.453592, rel=1e-5)
    assert "usa_emissions.json" in ci.source and CODECARBON_VERSION in ci.source


@pytest.mark.parametrize("spelling", ["CA-QC", "can-qc", "Quebec", "Québec", "CA Quebec"])
def test_canadian_province(spelling: str) -> None:
    mix = _bundled("2023", "canada_energy_mix.json")["quebec"]
    factors = _bundled("carbon_intensity_per_source.json")
    key = {"naturalGas": "natural_gas", "hydro": "hydroelectricity"}
    shares = {k: v for k, v in mix.items() if k != "total"}
    expected = sum(v * factors.get(key.get(k, k), factors["world_average"]) for k, v in shares.items())
    expected /= sum(shares.values())
    ci = offline_intensity(spelling)
    assert ci.region == "CA-QC"
    assert ci.region_name == "Quebec, Canada"
    assert ci.intensity_g_per_kwh == pytest.approx(expected)
    assert 0 < ci.intensity_g_per_kwh < offline_intensity("CA-AB").intensity_g_per_kwh  # hydro < gas
    assert "canada_energy_mix.json" in ci.source


# --- world average -----------------------------------------------------------------------------


@pytest.mark.parametrize("region", [None, "", "   ", "WORLD", "world"])
def test_world_default(region: str | None) -> None:
    ci = offline_intensity(region)
    assert ci.region == WORLD
    assert ci.intensity_g_per_kwh == _bundled("carbon_intensity_per_source.json")["world_average"]
    assert "world_average" in ci.source and CODECARBON_VERSION in ci.source


# --- unknown regions ---------------------------------------------------------------------------


def test_unknown_region_message_suggests_and_explains() -> None:
    with pytest.raises(UnknownRegionError) as info:
        offline_intensity("Frnace")
    message = str(info.value)
    assert "'Frnace'" in message
    assert "FRA (France)" in message
    assert "mlflow-green regions" in message
    assert "MLFLOW_GREEN_REGION" in message


@pytest.mark.parametrize("region", ["XYZ", "US-ZZ", "CA-ZZ", "zz", "Atlantis", "FRA1", "F", "-"])
def test_unknown_regions_raise(region: str) -> None:
    with pytest.raises(UnknownRegionError, match="MLFLOW_GREEN_REGION"):
        offline_intensity(region)


def test_ambiguous_name_lists_both() -> None:
    with pytest.raises(UnknownRegionError) as info:
        offline_intensity("Georgia")
    assert "GEO" in str(info.value) and "US-GA" in str(info.value)


def test_non_string_region_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="string"):
        offline_intensity(250)  # type: ignore[arg-type]


def test_known_regions_covers_every_kind() -> None:
    regions = known_regions()
    assert regions[WORLD] == "World average"
    assert regions["FRA"] == "France"
    assert regions["US-CA"] == "California, United States"
    assert regions["CA-QC"] == "Quebec, Canada"
    assert len(regions) > 250
    for code in regions:
        assert offline_intensity(code).region == code
    regions["FRA"] = "changed"  # a copy: the cache is not mutated
    assert known_regions()["FRA"] == "France"


# --- emissions ---------------------------------------------------------------------------------


def test_emissions_formula_with_pue() -> None:
    ci = CarbonIntensity("FRA", "France", 50.0, "test")
    assert ci.emissions_kg(3.6e6) == pytest.approx(0.05)  # 1 kWh * 50 g/kWh
    assert ci.emissions_kg(7.2e6, pue=1.5) == pytest.approx(2 * 1.5 * 50 / 1000)
    assert ci.emissions_kg(0.0, pue=1.5) == 0.0


def test_emissions_from_offline_table() -> None:
    ci = offline_intensity("DEU")
    assert ci.emissions_kg(3.6e6, pue=1.2) == pytest.approx(1.2 * ci.intensity_g_per_kwh / 1000)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_carbon_intensity_rejects_bad_values(bad: float) -> None:
    with pytest.raises(ConfigError):
        CarbonIntensity("FRA", "France", bad, "test")


def test_carbon_intensity_is_frozen_and_hashable() -> None:
    ci = offline_intensity("FRA")
    assert hash(ci) == hash(offline_intensity("fr"))
    with pytest.raises(AttributeError):
        ci.region = "DEU"  # type: ignore[misc]


# --- providers ---------------------------------------------------------------------------------


def test_offline_unless_a_provider_is_named() -> None:
    provider = FakeIntensityProvider(1.0, name="grid")
    with registered_intensity_providers(lambda: provider):
        ci = resolve_intensity("FRA")
    assert ci.method == "offline" and provider.calls == []


def test_named_provider_is_used_with_canonical_region() -> None:
    provider = FakeIntensityProvider({"FRA": 42.0, WORLD: 400.0}, name="grid")
    with registered_intensity_providers(lambda: provider):
        ci = resolve_intensity(" fr ", provider="grid")
        world = resolve_intensity(None, provider="grid")
    assert (ci.region, ci.intensity_g_per_kwh, ci.method) == ("FRA", 42.0, "grid")
    assert world.intensity_g_per_kwh == 400.0
    assert provider.calls == ["FRA", None]


def test_provider_gets_zones_the_offline_table_does_not_know() -> None:
    provider = FakeIntensityProvider({"DE-50HZ": 300.0}, name="grid")
    with registered_intensity_providers(lambda: provider):
        ci = resolve_intensity("DE-50HZ", provider="grid")
    assert ci.region == "DE-50HZ" and ci.intensity_g_per_kwh == 300.0


def test_unknown_provider_names_the_registered_ones() -> None:
    with registered_intensity_providers(partial(FakeIntensityProvider, name="grid")):
        with pytest.raises(ConfigError) as info:
            resolve_intensity("FRA", provider="electricitymaps")
    assert "'electricitymaps'" in str(info.value) and "grid" in str(info.value)


def test_unknown_provider_without_plugins() -> None:
    with pytest.raises(ConfigError, match="none"):
        resolve_intensity("FRA", provider="electricitymaps")


def test_failing_provider_falls_back_to_offline(caplog: pytest.LogCaptureFixture) -> None:
    factory = partial(FakeIntensityProvider, name="grid", fail=RuntimeError("API down"))
    with registered_intensity_providers(factory), caplog.at_level(logging.WARNING, "mlflow_green.carbon"):
        ci = resolve_intensity("FRA", provider="grid")
    offline = offline_intensity("FRA")
    assert ci.intensity_g_per_kwh == offline.intensity_g_per_kwh and ci.method == "offline"
    assert ci.source.startswith("offline fallback: provider 'grid' failed (RuntimeError: API down)")
    assert ci.source.endswith(offline.source)
    assert "API down" in caplog.text


def test_provider_returning_garbage_falls_back() -> None:
    class Garbage(IntensityProvider):
        name = "garbage"

        def intensity(self, region: str | None) -> CarbonIntensity:
            return 42.0  # type: ignore[return-value]

    with registered_intensity_providers(Garbage):
        ci = resolve_intensity("DEU", provider="garbage")
    assert ci.region == "DEU" and ci.source.startswith("offline fallback:")


def test_failing_provider_with_unknown_offline_region_raises() -> None:
    with registered_intensity_providers(partial(FakeIntensityProvider, name="grid", fail="down")):
        with pytest.raises(UnknownRegionError):
            resolve_intensity("DE-50HZ", provider="grid")


# --- offline means offline ---------------------------------------------------------------------


def test_offline_lookup_imports_no_codecarbon_and_opens_no_socket() -> None:
    snippet = textwrap.dedent(
        f"""
        import socket, sys
        sys.path.insert(0, {str(REPO_ROOT)!r})

        def forbid(event, args):
            if event.startswith("socket.") or event in ("urllib.Request", "http.client.connect"):
                raise RuntimeError("network use: " + event)

        def refuse(*args, **kwargs):
            raise RuntimeError("socket.connect called")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        sys.addaudithook(forbid)

        from mlflow_green.carbon import known_regions, offline_intensity, resolve_intensity
        from mlflow_green.errors import UnknownRegionError
        for region in ("FRA", "fr", "US-CA", "CA-QC", None, "Germany"):
            offline_intensity(region)
        resolve_intensity("DEU")
        known_regions()
        try:
            offline_intensity("Frnace")
        except UnknownRegionError:
            pass
        assert "codecarbon" not in sys.modules, sorted(m for m in sys.modules if "codecarbon" in m)
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_offline_lookup_is_fast_cold() -> None:
    snippet = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        import mlflow_green.carbon as carbon
        start = time.perf_counter()
        carbon.offline_intensity("FRA")
        print(time.perf_counter() - start)
        """
    )
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) < 0.1  # about 2 ms here; generous for loaded CI machines
