"""CodeCarbon's bundled carbon-intensity tables, read as JSON files (no CodeCarbon import, no network).

- countries by ISO 3166 alpha-3 code: ``global_energy_mix.json`` (Our World in Data);
- US states (``US-CA``): ``<year>/usa_emissions.json`` (EPA eGRID, lbs/MWh converted to g/kWh);
- Canadian provinces (``CA-QC``): ``<year>/canada_energy_mix.json`` weighted by the lifecycle
  factors per source in ``carbon_intensity_per_source.json``;
- ``WORLD``: the world average of ``carbon_intensity_per_source.json``.

Each table is read once per process. Parsing what users type is :mod:`mlflow_green.carbon.offline`.

Example:
    >>> entry = all_entries()["FRA"]
    >>> entry.region_name, entry.source.startswith("codecarbon ")
    ('France', True)
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlflow_green import codecarbon_data
from mlflow_green.carbon.intensity import WORLD
from mlflow_green.errors import GreenError

logger = logging.getLogger(__name__)

_LBS_PER_MWH_TO_G_PER_KWH = 0.45359237
"""1 lb/MWh = 453.59237 g / 1000 kWh."""

_CANADA_PROVINCE_CODES: dict[str, str] = {
    "alberta": "AB",
    "british columbia": "BC",
    "manitoba": "MB",
    "new brunswick": "NB",
    "newfoundland and labrador": "NL",
    "northwest territories": "NT",
    "nova scotia": "NS",
    "nunavut": "NU",
    "ontario": "ON",
    "prince edward island": "PE",
    "quebec": "QC",
    "saskatchewan": "SK",
    "yukon": "YT",
}
"""ISO 3166-2:CA subdivision codes of the provinces and territories in CodeCarbon's data."""

_CANADA_SOURCE_FACTORS: dict[str, str] = {
    "naturalGas": "natural_gas",
    "petroleum": "petroleum",
    "coal": "coal",
    "nuclear": "nuclear",
    "hydro": "hydroelectricity",
    "wind": "wind",
    "solar": "solar",
    "biomass": "biomass",
}
"""Generation source in ``canada_energy_mix.json`` -> key in ``carbon_intensity_per_source.json``.

Sources without a factor (``tidal``, ``other``) are counted at the world average.
"""



@dataclass(frozen=True)
class RegionEntry:
    """One region of the offline table: canonical code, name, g CO2e/kWh and where the figure comes from."""

    region: str
    region_name: str
    intensity_g_per_kwh: float
    source: str


@functools.cache
def data_dir() -> str:
    """CodeCarbon's ``data/private_infra`` folder, found without importing CodeCarbon."""
    base = codecarbon_data.package_dir()
    if base is not None and (base / "data" / "private_infra").is_dir():
        return str(base / "data" / "private_infra")
    raise GreenError(
        "CodeCarbon's bundled carbon-intensity data was not found; mlflow-green depends on it. "
        "Reinstall it with: pip install --force-reinstall 'codecarbon>=3.0'"
    )


def codecarbon_version() -> str:
    data_dir()  # raises the helpful error when CodeCarbon is missing
    return codecarbon_data.version() or "?"


def load_json(*parts: str) -> Any:
    path = os.path.join(data_dir(), *parts)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise GreenError(f"Could not read CodeCarbon's carbon-intensity data {path}: {exc}") from exc


def latest_year_dir(filename: str) -> str:
    """The newest ``<year>/`` folder holding ``filename`` (``2023`` in CodeCarbon 3.3)."""
    years = sorted((d for d in os.listdir(data_dir()) if d.isdigit()), reverse=True)
    for year in years:
        if os.path.isfile(os.path.join(data_dir(), year, filename)):
            return year
    raise GreenError(f"CodeCarbon's data has no {filename} under {data_dir()}")


def title_case(name: str) -> str:
    small = {"and", "of", "the"}
    return " ".join(w if w in small else w.capitalize() for w in name.split())


@functools.cache
def per_source() -> Mapping[str, Any]:
    data: Mapping[str, Any] = load_json("carbon_intensity_per_source.json")
    return data


@functools.cache
def world_entry() -> RegionEntry:
    data = per_source()
    return RegionEntry(
        WORLD,
        "World average",
        float(data["world_average"]),
        f"codecarbon {codecarbon_version()} carbon_intensity_per_source.json world_average "
        f"({data.get('world_average_source', 'IEA')})",
    )


@functools.cache
def countries() -> dict[str, RegionEntry]:
    version = codecarbon_version()
    entries: dict[str, RegionEntry] = {}
    for code, row in load_json("global_energy_mix.json").items():
        if row.get("carbon_intensity") is None:
            continue
        year = row.get("year", "n.d.")
        source = f"codecarbon {version} global_energy_mix.json (Our World in Data, {year})"
        name = row.get("country_name", code)
        entries[code.upper()] = RegionEntry(code.upper(), name, float(row["carbon_intensity"]), source)
    return entries


@functools.cache
def us_states() -> dict[str, RegionEntry]:
    year = latest_year_dir("usa_emissions.json")
    data = load_json(year, "usa_emissions.json")
    about = data.get("_source", {})
    source = (
        f"codecarbon {codecarbon_version()} {year}/usa_emissions.json "
        f"({about.get('name', 'EPA eGRID')}, {about.get('year', year)}; lbs/MWh converted to g/kWh)"
    )
    entries: dict[str, RegionEntry] = {}
    for name, row in data.items():
        code = str(row.get("regionCode", "")) if isinstance(row, dict) else ""
        if name.startswith("_") or len(code) != 2 or "emissions" not in row:
            continue  # metadata, or the national "usa" row (USA comes from the country table)
        region = f"US-{code.upper()}"
        intensity = float(row["emissions"]) * _LBS_PER_MWH_TO_G_PER_KWH
        entries[region] = RegionEntry(region, f"{title_case(name)}, United States", intensity, source)
    return entries


@functools.cache
def ca_provinces() -> dict[str, RegionEntry]:
    year = latest_year_dir("canada_energy_mix.json")
    factors = per_source()
    world_g_per_kwh = float(factors["world_average"])
    source = (
        f"codecarbon {codecarbon_version()} {year}/canada_energy_mix.json provincial generation mix "
        f"x carbon_intensity_per_source.json lifecycle factors"
    )
    entries: dict[str, RegionEntry] = {}
    for name, mix in load_json(year, "canada_energy_mix.json").items():
        code = _CANADA_PROVINCE_CODES.get(name.casefold())
        if code is None:
            logger.debug("Skipping Canadian region %r: no ISO 3166-2 code known", name)
            continue
        shares = {k: float(v) for k, v in mix.items() if k != "total"}
        total = sum(shares.values())
        if total <= 0:
            continue
        weighted = sum(
            share * float(factors.get(_CANADA_SOURCE_FACTORS.get(kind, ""), world_g_per_kwh))
            for kind, share in shares.items()
        )
        region = f"CA-{code}"
        entries[region] = RegionEntry(region, f"{title_case(name)}, Canada", weighted / total, source)
    return entries


@functools.cache
def all_entries() -> dict[str, RegionEntry]:
    return {WORLD: world_entry(), **countries(), **us_states(), **ca_provinces()}
