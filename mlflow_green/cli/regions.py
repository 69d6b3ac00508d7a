"""``mlflow-green regions``: the carbon-intensity regions known offline, with their intensity."""

from __future__ import annotations

import json

import click

from mlflow_green.carbon import known_regions, offline_intensity


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.argument("search", required=False)
def regions(as_json: bool, search: str | None) -> None:
    """List region codes (optionally those whose code or name contains SEARCH)."""
    rows = []
    for code, name in sorted(known_regions().items()):
        if search and search.lower() not in code.lower() and search.lower() not in name.lower():
            continue
        intensity = offline_intensity(code)
        rows.append({"region": code, "name": name, "intensity_g_per_kwh": intensity.intensity_g_per_kwh})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['region']:<8} {row['intensity_g_per_kwh']:>7.1f} g/kWh  {row['name']}")
