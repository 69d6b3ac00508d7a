"""``mlflow-green doctor``: which meters work here and why not, and the carbon settings in force."""

from __future__ import annotations

import json
import platform
import socket
import sys
from typing import Any

import click

from mlflow_green._version import __version__
from mlflow_green.config import GreenConfig
from mlflow_green.errors import GreenError
from mlflow_green.measure import hardware
from mlflow_green.measure.readings import COMPONENTS
from mlflow_green.measure.selection import instantiate, select_meters

_COMPONENT_NAMES = {"gpu": "GPU", "cpu": "CPU", "ram": "RAM"}


def diagnose(config: GreenConfig) -> dict[str, Any]:
    """Everything ``doctor`` reports, as a JSON-ready dict (no meter is opened)."""
    explicit = config.meters is not None
    selection = select_meters(instantiate(config.meters), explicit_order=explicit)
    components = {}
    for component in COMPONENTS:
        meter = selection.assignments.get(component)
        if meter is None:
            components[component] = None
            continue
        choice = next(c for c in selection.choices if c.meter is meter)
        provenance = choice.availability.provenance
        components[component] = {
            "meter": meter.name,
            "label": meter.label(component, provenance),
            "provenance": provenance,
        }
    estimated = any(c is not None and c["provenance"] == "estimate" for c in components.values())
    return {
        "mlflow_green_version": __version__,
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "hardware": {
            "cpu": hardware.cpu_model(),
            "cpu_sockets": hardware.cpu_sockets(),
            "ram_bytes": hardware.total_ram_bytes(),
            "gpus": hardware.gpu_names(),
        },
        "meters": [c.to_dict() for c in selection.choices],
        "components": components,
        "meters_tag": ",".join(f"{c}:{v['label']}" for c, v in components.items() if v),
        "estimated": estimated,
        "config": config.describe(),
    }


def _render(report: dict[str, Any]) -> str:
    lines = [f"mlflow-green {report['mlflow_green_version']} on {report['host']} (Python {report['python']})", ""]
    lines.append("Meters (one per component, highest priority first):")
    for meter in report["meters"]:
        mark = "ok " if meter["available"] else "no "
        used = ", ".join(meter["selected_for"]) or "-"
        lines.append(f"  [{mark}] {meter['name']:<11} priority {meter['priority']:>4}  used for: {used:<13} {meter['reason']}")
    lines.append("")
    lines.append("What will be measured:")
    for component, chosen in report["components"].items():
        name = _COMPONENT_NAMES[component]
        if chosen is None:
            why = "no GPU meter available here — GPU energy is not measured" if component == "gpu" else "not measured"
            lines.append(f"  {name}: {why}")
        else:
            lines.append(f"  {name}: {chosen['meter']} ({chosen['provenance']})")
    lines.append(f"  green.meters = {report['meters_tag']}")
    if report["estimated"]:
        lines.append("  Some energy here is an ESTIMATE: runs will be tagged green.estimated=true.")
    cfg = report["config"]
    lines.append("")
    lines.append("Carbon accounting (offline unless a provider is configured):")
    region_note = (
        " — world average: no region configured (set MLFLOW_GREEN_REGION or region=)"
        if cfg["region"] == "WORLD"
        else ""
    )
    lines.append(f"  region     {cfg['region']} ({cfg['region_name']}){region_note}  [{cfg['sources'].get('region', 'default')}]")
    lines.append(f"  intensity  {cfg['intensity_g_per_kwh']:.1f} gCO2e/kWh — {cfg['intensity_source']}")
    lines.append(f"  PUE        {cfg['pue']:g}  [{cfg['sources'].get('pue', 'default')}]")
    lines.append(
        f"  sampling   every {cfg['sample_interval_s']:g} s for meters without a counter  "
        f"[{cfg['sources'].get('sample_interval_s', 'default')}]"
    )
    return "\n".join(lines)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--region", default=None, help="Check this region instead of MLFLOW_GREEN_REGION.")
@click.option("--pue", type=float, default=None, help="Check this PUE instead of MLFLOW_GREEN_PUE.")
@click.option("--meters", default=None, help="Check these meters (comma-separated, in priority order).")
def doctor(as_json: bool, region: str | None, pue: float | None, meters: str | None) -> None:
    """Which meters work here, and why not; the region, intensity and PUE in force.

    Exits 0, or 2 when the configuration (arguments or MLFLOW_GREEN_* variables) is invalid.
    """
    try:
        config = GreenConfig.resolve(region=region, pue=pue, meters=meters)
        report = diagnose(config)
    except GreenError as exc:  # bad configuration: say what and how to fix it, exit 2
        if as_json:
            click.echo(json.dumps({"error": str(exc), "type": type(exc).__name__}, indent=2))
        else:
            click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    click.echo(json.dumps(report, indent=2) if as_json else _render(report))
