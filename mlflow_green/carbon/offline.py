"""Carbon intensity: grams of CO2e per kWh of electricity, by region, offline by default.

The offline table is the data CodeCarbon ships (read as JSON files, without importing
CodeCarbon, so looking up a region costs a few milliseconds and never touches the network):

- countries by ISO 3166 code (``"FRA"`` or ``"FR"``): ``global_energy_mix.json``
  (Our World in Data);
- US states (``"US-CA"``, ``"USA-CA"``, ``"California"``): ``usa_emissions.json`` (EPA eGRID);
- Canadian provinces (``"CA-QC"``, ``"CAN-QC"``, ``"Quebec"``): the provincial generation mix
  in ``canada_energy_mix.json`` weighted by the lifecycle factors per source in
  ``carbon_intensity_per_source.json``;
- ``"WORLD"`` (also ``None`` or ``""``): the world average from
  ``carbon_intensity_per_source.json``. mlflow-green never guesses a country.

Live providers (Electricity Maps, WattTime, ...) are third-party plugins registered through
the ``register_intensity_providers`` hook; they are used only when named explicitly.

Example:
    >>> ci = offline_intensity("fr")
    >>> ci.region, ci.method
    ('FRA', 'offline')
    >>> offline_intensity(None).region
    'WORLD'
"""

from __future__ import annotations

import functools
import json
import logging
import os
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlflow_green import codecarbon_data
from mlflow_green.carbon.intensity import ENV_REGION, REGIONS_COMMAND, WORLD, CarbonIntensity
from mlflow_green.errors import ConfigError, GreenError, UnknownRegionError

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

_US_PREFIXES = ("US", "USA")
_CA_PREFIXES = ("CA", "CAN")


# --- the offline table ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    region: str
    region_name: str
    intensity_g_per_kwh: float
    source: str


@functools.cache
def _data_dir() -> str:
    """CodeCarbon's ``data/private_infra`` folder, found without importing CodeCarbon."""
    base = codecarbon_data.package_dir()
    if base is not None and (base / "data" / "private_infra").is_dir():
        return str(base / "data" / "private_infra")
    raise GreenError(
        "CodeCarbon's bundled carbon-intensity data was not found; mlflow-green depends on it. "
        "Reinstall it with: pip install --force-reinstall 'codecarbon>=3.0'"
    )


def _codecarbon_version() -> str:
    _data_dir()  # raises the helpful error when CodeCarbon is missing
    return codecarbon_data.version() or "?"


def _load_json(*parts: str) -> Any:
    path = os.path.join(_data_dir(), *parts)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise GreenError(f"Could not read CodeCarbon's carbon-intensity data {path}: {exc}") from exc


def _latest_year_dir(filename: str) -> str:
    """The newest ``<year>/`` folder holding ``filename`` (``2023`` in CodeCarbon 3.3)."""
    years = sorted((d for d in os.listdir(_data_dir()) if d.isdigit()), reverse=True)
    for year in years:
        if os.path.isfile(os.path.join(_data_dir(), year, filename)):
            return year
    raise GreenError(f"CodeCarbon's data has no {filename} under {_data_dir()}")


def _title(name: str) -> str:
    small = {"and", "of", "the"}
    return " ".join(w if w in small else w.capitalize() for w in name.split())


@functools.cache
def _per_source() -> Mapping[str, Any]:
    data: Mapping[str, Any] = _load_json("carbon_intensity_per_source.json")
    return data


@functools.cache
def _world() -> _Entry:
    data = _per_source()
    return _Entry(
        WORLD,
        "World average",
        float(data["world_average"]),
        f"codecarbon {_codecarbon_version()} carbon_intensity_per_source.json world_average "
        f"({data.get('world_average_source', 'IEA')})",
    )


@functools.cache
def _countries() -> dict[str, _Entry]:
    version = _codecarbon_version()
    entries: dict[str, _Entry] = {}
    for code, row in _load_json("global_energy_mix.json").items():
        if row.get("carbon_intensity") is None:
            continue
        year = row.get("year", "n.d.")
        source = f"codecarbon {version} global_energy_mix.json (Our World in Data, {year})"
        name = row.get("country_name", code)
        entries[code.upper()] = _Entry(code.upper(), name, float(row["carbon_intensity"]), source)
    return entries


@functools.cache
def _us_states() -> dict[str, _Entry]:
    year = _latest_year_dir("usa_emissions.json")
    data = _load_json(year, "usa_emissions.json")
    about = data.get("_source", {})
    source = (
        f"codecarbon {_codecarbon_version()} {year}/usa_emissions.json "
        f"({about.get('name', 'EPA eGRID')}, {about.get('year', year)}; lbs/MWh converted to g/kWh)"
    )
    entries: dict[str, _Entry] = {}
    for name, row in data.items():
        code = str(row.get("regionCode", "")) if isinstance(row, dict) else ""
        if name.startswith("_") or len(code) != 2 or "emissions" not in row:
            continue  # metadata, or the national "usa" row (USA comes from the country table)
        region = f"US-{code.upper()}"
        intensity = float(row["emissions"]) * _LBS_PER_MWH_TO_G_PER_KWH
        entries[region] = _Entry(region, f"{_title(name)}, United States", intensity, source)
    return entries


@functools.cache
def _ca_provinces() -> dict[str, _Entry]:
    year = _latest_year_dir("canada_energy_mix.json")
    factors = _per_source()
    world_g_per_kwh = float(factors["world_average"])
    source = (
        f"codecarbon {_codecarbon_version()} {year}/canada_energy_mix.json provincial generation mix "
        f"x carbon_intensity_per_source.json lifecycle factors"
    )
    entries: dict[str, _Entry] = {}
    for name, mix in _load_json(year, "canada_energy_mix.json").items():
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
        entries[region] = _Entry(region, f"{_title(name)}, Canada", weighted / total, source)
    return entries


def _normalize_name(text: str) -> str:
    """Case-, accent- and spacing-insensitive form of a region name (``"Québec"`` -> ``"quebec"``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.replace("_", " ").casefold().split())


@functools.cache
def _names() -> dict[str, tuple[str, ...]]:
    """Normalized region name -> region codes (more than one when ambiguous, e.g. Georgia)."""
    names: dict[str, list[str]] = {}
    for table in (_countries(), _us_states(), _ca_provinces()):
        for code, entry in table.items():
            short = entry.region_name.rsplit(", ", 1)[0] if code[2:3] == "-" else entry.region_name
            names.setdefault(_normalize_name(short), []).append(code)
    names.setdefault(_normalize_name("World"), []).append(WORLD)
    return {name: tuple(codes) for name, codes in names.items()}


@functools.cache
def _alpha2_table() -> dict[str, str]:
    """ISO 3166 alpha-2 -> alpha-3, from pycountry's bundled database (a CodeCarbon dependency).

    The JSON file is read directly: importing pycountry costs about 30 ms cold.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("pycountry")
        base = next(iter(spec.submodule_search_locations or [])) if spec is not None else None
        if base is None:
            return {}
        with open(os.path.join(base, "databases", "iso3166-1.json"), encoding="utf-8") as f:
            rows = json.load(f)["3166-1"]
    except (ImportError, ValueError, OSError, KeyError, StopIteration) as exc:
        logger.debug("pycountry's ISO 3166 table is unavailable (%s); 2-letter codes are not understood", exc)
        return {}
    return {row["alpha_2"]: row["alpha_3"] for row in rows if "alpha_2" in row and "alpha_3" in row}


def _alpha2_to_alpha3(code: str) -> str | None:
    """ISO 3166 alpha-2 -> alpha-3 (None if unknown)."""
    return _alpha2_table().get(code.upper())


def _subregion(text: str, prefixes: tuple[str, ...], table: Mapping[str, _Entry], country: str) -> _Entry | None:
    """Parse ``"US-CA"``, ``"USA_CA"``, ``"US California"`` style codes against ``table``."""
    for sep in "-_ ":
        prefix, found, rest = text.partition(sep)
        if found and prefix.upper() in prefixes:
            rest = rest.strip()
            entry = table.get(f"{country}-{rest.upper()}")
            if entry is None:
                codes = _names().get(_normalize_name(rest), ())
                entry = next((table[c] for c in codes if c in table), None)
            return entry
    return None


def _lookup(region: str) -> _Entry | None:
    """The offline entry for a stripped, non-empty region string, or None if unknown."""
    upper = region.upper()
    if upper == WORLD:
        return _world()
    if region.isascii() and region.isalpha():
        if len(region) == 3 and upper in _countries():
            return _countries()[upper]
        if len(region) == 2:
            alpha3 = _alpha2_to_alpha3(upper)
            if alpha3 is not None and alpha3 in _countries():
                return _countries()[alpha3]
    entry = _subregion(region, _US_PREFIXES, _us_states(), "US") or _subregion(
        region, _CA_PREFIXES, _ca_provinces(), "CA"
    )
    if entry is not None:
        return entry
    codes = _names().get(_normalize_name(region), ())
    if len(codes) == 1:
        return _world() if codes[0] == WORLD else _all_entries()[codes[0]]
    if len(codes) > 1:
        choices = ", ".join(f"{c} ({_all_entries()[c].region_name})" for c in codes)
        raise UnknownRegionError(
            f"Region {region!r} is ambiguous: use one of {choices} (as region=... or {ENV_REGION})."
        )
    return None


@functools.cache
def _all_entries() -> dict[str, _Entry]:
    return {WORLD: _world(), **_countries(), **_us_states(), **_ca_provinces()}


def _unknown_region(region: str) -> UnknownRegionError:
    import difflib

    shown = region if len(region) <= 60 else region[:57] + "..."
    names = _names()
    entries = _all_entries()
    candidates = {code.casefold(): code for code in entries}
    candidates.update({name: codes[0] for name, codes in names.items()})
    matches = difflib.get_close_matches(_normalize_name(shown), list(candidates), n=6, cutoff=0.6)
    suggested = list(dict.fromkeys(candidates[m] for m in matches))[:3]
    hint = ""
    if suggested:
        hint = " Did you mean " + " or ".join(f"{c} ({entries[c].region_name})" for c in suggested) + "?"
    return UnknownRegionError(
        f"Unknown carbon-intensity region {shown!r}.{hint} Use an ISO 3166 country code "
        f"('FRA' or 'FR'), a US state ('US-CA'), a Canadian province ('CA-QC') or 'WORLD'; "
        f"list them all with `{REGIONS_COMMAND}`. Set the region with region=... or the "
        f"{ENV_REGION} environment variable (unset means the world average)."
    )


def offline_intensity(region: str | None) -> CarbonIntensity:
    """The carbon intensity of a region from CodeCarbon's bundled data. Never goes online.

    Args:
        region: A country (``"FRA"``, ``"fr"``, ``"France"``), a US state (``"US-CA"``,
            ``"USA-CA"``, ``"California"``), a Canadian province (``"CA-QC"``, ``"CAN-QC"``,
            ``"Quebec"``) or ``"WORLD"``. Case and surrounding whitespace are ignored.
            ``None`` or ``""`` means the world average. A bare 2-letter code is a country
            (``"CA"`` is Canada, not California).

    Returns:
        The intensity, with the canonical region code and the dataset version in ``source``.

    Raises:
        UnknownRegionError: The region is not in the data (the message suggests close matches).
        ConfigError: ``region`` is not a string.

    Example:
        >>> offline_intensity(" us-ca ").region
        'US-CA'
    """
    if region is not None and not isinstance(region, str):
        raise ConfigError(f"region must be a string such as 'FRA' or None, got {type(region).__name__} {region!r}")
    text = (region or "").strip()
    entry = _world() if not text else _lookup(text)
    if entry is None:
        raise _unknown_region(text)
    return CarbonIntensity(entry.region, entry.region_name, entry.intensity_g_per_kwh, entry.source)


def known_regions() -> dict[str, str]:
    """Every region the offline table knows: canonical code -> name (``WORLD`` first).

    Example:
        >>> known_regions()["DEU"]
        'Germany'
    """
    return {code: entry.region_name for code, entry in _all_entries().items()}
