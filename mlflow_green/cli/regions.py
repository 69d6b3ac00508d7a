"""``mlflow-green regions``: the carbon-intensity regions known offline, with their intensity.

``regions SEARCH`` answers the way ``region=`` is read: a code or name the configuration accepts
(``de`` and ``DEU`` are Germany, ``us-ca`` is California) shows that region alone; otherwise the
regions whose code or name contains SEARCH; nothing found exits 2 with the closest names.

Example:
    $ mlflow-green regions              # all of them
    $ mlflow-green regions de           # Germany
    $ mlflow-green regions land         # Finland, Iceland, Ireland, Netherlands, Poland, ...
"""

from __future__ import annotations

import difflib
import json
from typing import Any, NoReturn

import click

from mlflow_green import formatting as fmt
from mlflow_green.carbon import REGIONS_COMMAND, known_regions, offline_intensity
from mlflow_green.cli.failure import fail
from mlflow_green.errors import ConfigError, UnknownRegionError

EXIT_NOT_FOUND = 2


def find_regions(search: str | None) -> tuple[list[str], str]:
    """The region codes to show for ``search`` and how they were found (``all``, ``exact``,
    ``ambiguous``, ``contains``); ``([], "none")`` when nothing matches.

    Example:
        >>> find_regions("de")
        (['DEU'], 'exact')
        >>> find_regions("atlantis")
        ([], 'none')
    """
    regions = known_regions()
    text = (search or "").strip()
    if not text:
        return sorted(regions), "all"
    try:
        return [offline_intensity(text).region], "exact"
    except UnknownRegionError as exc:
        ambiguous = [code for code in regions if f"{code} (" in str(exc) and "ambiguous" in str(exc)]
        if ambiguous:
            return sorted(ambiguous), "ambiguous"
    except ConfigError:
        pass
    needle = text.casefold()
    found = [code for code, name in regions.items() if needle in code.casefold() or needle in name.casefold()]
    return sorted(found), "contains" if found else "none"


def close_matches(search: str, n: int = 5) -> list[str]:
    """Region codes whose code or name is closest to ``search`` (for a search that found nothing)."""
    regions = known_regions()
    candidates: dict[str, str] = {}
    for code, name in regions.items():
        candidates.setdefault(code.casefold(), code)
        candidates.setdefault(name.casefold(), code)
        for word in name.replace(",", " ").split():
            candidates.setdefault(word.casefold(), code)
    matches = difflib.get_close_matches(search.strip().casefold(), list(candidates), n=3 * n, cutoff=0.5)
    return list(dict.fromkeys(candidates[m] for m in matches))[:n]


def _row(code: str, name: str) -> dict[str, Any]:
    return {"region": code, "name": name, "intensity_g_per_kwh": offline_intensity(code).intensity_g_per_kwh}


def _not_found(search: str, as_json: bool) -> NoReturn:
    regions = known_regions()
    suggestions = close_matches(search)
    shown = search if len(search) <= 60 else search[:57] + "..."
    message = f"No region matches {shown!r}."
    if suggestions:
        message += " Closest: " + ", ".join(f"{code} ({regions[code]})" for code in suggestions) + "."
    message += (f" Regions are ISO 3166 countries ('FRA' or 'FR'), US states ('US-CA') and Canadian provinces"
                f" ('CA-QC'); `{REGIONS_COMMAND}` lists all {fmt.count(len(regions))}.")
    fail(message, "UnknownRegionError", as_json=as_json, exit_code=EXIT_NOT_FOUND, suggestions=suggestions)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.argument("search", required=False)
def regions(as_json: bool, search: str | None) -> None:
    """List region codes with their carbon intensity: SEARCH as a code or name the configuration
    accepts (de, DEU, Germany, us-ca), else the regions whose code or name contains it.

    Exits 0, or 2 when nothing matches (with the closest regions).
    """
    codes, how = find_regions(search)
    if not codes:
        _not_found(search or "", as_json)
    names = known_regions()
    rows = [_row(code, names[code]) for code in codes]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(row["region"]) for row in rows)
    for row in rows:
        intensity = fmt.intensity_g_per_kwh(row["intensity_g_per_kwh"])
        click.echo(f"{row['region']:<{width}}  {intensity:>17}  {row['name']}")
    if how == "ambiguous":
        click.echo(f"{search!r} names {fmt.plural(len(rows), 'region')}: give the code.", err=True)
