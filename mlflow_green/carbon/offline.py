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

The tables themselves are read by :mod:`mlflow_green.carbon.offline_tables`; here, what users
type is matched to them.

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

from mlflow_green.carbon.intensity import ENV_REGION, REGIONS_COMMAND, WORLD, CarbonIntensity
from mlflow_green.carbon.offline_tables import RegionEntry, all_entries, ca_provinces, countries, us_states, world_entry
from mlflow_green.errors import ConfigError, UnknownRegionError

logger = logging.getLogger(__name__)

_US_PREFIXES = ("US", "USA")
_CA_PREFIXES = ("CA", "CAN")


def _normalize_name(text: str) -> str:
    """Case-, accent- and spacing-insensitive form of a region name (``"Québec"`` -> ``"quebec"``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.replace("_", " ").casefold().split())


@functools.cache
def _names() -> dict[str, tuple[str, ...]]:
    """Normalized region name -> region codes (more than one when ambiguous, e.g. Georgia)."""
    names: dict[str, list[str]] = {}
    for table in (countries(), us_states(), ca_provinces()):
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


def _subregion(text: str, prefixes: tuple[str, ...], table: Mapping[str, RegionEntry], country: str) -> RegionEntry | None:
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


def _lookup(region: str) -> RegionEntry | None:
    """The offline entry for a stripped, non-empty region string, or None if unknown."""
    upper = region.upper()
    if upper == WORLD:
        return world_entry()
    if region.isascii() and region.isalpha():
        if len(region) == 3 and upper in countries():
            return countries()[upper]
        if len(region) == 2:
            alpha3 = _alpha2_to_alpha3(upper)
            if alpha3 is not None and alpha3 in countries():
                return countries()[alpha3]
    entry = _subregion(region, _US_PREFIXES, us_states(), "US") or _subregion(
        region, _CA_PREFIXES, ca_provinces(), "CA"
    )
    if entry is not None:
        return entry
    codes = _names().get(_normalize_name(region), ())
    if len(codes) == 1:
        return world_entry() if codes[0] == WORLD else all_entries()[codes[0]]
    if len(codes) > 1:
        choices = ", ".join(f"{c} ({all_entries()[c].region_name})" for c in codes)
        raise UnknownRegionError(
            f"Region {region!r} is ambiguous: use one of {choices} (as region=... or {ENV_REGION})."
        )
    return None


def _unknown_region(region: str) -> UnknownRegionError:
    import difflib

    shown = region if len(region) <= 60 else region[:57] + "..."
    names = _names()
    entries = all_entries()
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
    entry = world_entry() if not text else _lookup(text)
    if entry is None:
        raise _unknown_region(text)
    return CarbonIntensity(entry.region, entry.region_name, entry.intensity_g_per_kwh, entry.source)


def known_regions() -> dict[str, str]:
    """Every region the offline table knows: canonical code -> name (``WORLD`` first).

    Example:
        >>> known_regions()["DEU"]
        'Germany'
    """
    return {code: entry.region_name for code, entry in all_entries().items()}
