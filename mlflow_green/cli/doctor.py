"""``mlflow-green doctor``: which meters work here and why not, the scope billed, the estimate model and
its numbers on this machine (resolving and caching CodeCarbon's model if needed), and the carbon settings."""

from __future__ import annotations

import json
import platform
from typing import Any

import click

from mlflow_green import formatting as fmt
from mlflow_green._version import __version__
from mlflow_green.cli.failure import fail
from mlflow_green.config import GreenConfig
from mlflow_green.errors import GreenError
from mlflow_green.measure import hardware
from mlflow_green.measure.attribution import Attribution
from mlflow_green.measure.host import host_id, hostname_of
from mlflow_green.measure.readings import COMPONENTS
from mlflow_green.measure.selection import instantiate, select_meters

_COMPONENT_NAMES = {"gpu": "GPU", "cpu": "CPU", "ram": "RAM"}
_SCOPE_TEXT = {
    "process": (
        "process (default): each run is billed for what its own process tree used — the GPUs it holds, "
        "its share of CPU time and of resident memory. Set MLFLOW_GREEN_SCOPE=machine (or scope='machine') "
        "on a dedicated host to bill whole devices."
    ),
    "machine": "machine: each run is billed for whole devices (a dedicated host).",
}


_GPU_BILLING = {  # the GPU rows of docs/meters.md, in one line each
    "process": (
        "billed: the GPUs (or MIG slices: their share of the parent GPU) on which the training holds a "
        "context, by its share of utilisation while others use them; report.json lists the others and why"
    ),
    "machine": "billed: every visible GPU whole (a MIG slice named in CUDA_VISIBLE_DEVICES: its share of the parent)",
}


def diagnose(config: GreenConfig) -> dict[str, Any]:
    """Everything ``doctor`` reports, as a JSON-ready dict (no meter is opened)."""
    explicit = config.meters is not None
    selection = select_meters(instantiate(config.meters), explicit_order=explicit)
    attribution = Attribution(config.scope)  # type: ignore[arg-type]
    for meter in selection.meters:  # labels say which share is billed, as in green.meters
        try:
            meter.attribute(attribution)
        except Exception:  # a plugin's hook: it will bill whole devices
            pass
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
        "host": hostname_of(host_id()),
        "host_id": host_id(),
        "scope": config.scope,
        "estimate_model": _estimate_model(selection.meters),
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


def _estimate_model(meters: Any) -> dict[str, Any] | None:
    """The power model the estimate uses here (resolved through CodeCarbon now if not cached)."""
    for meter in meters:
        model = getattr(meter, "model", None)
        if getattr(meter, "name", "") == "estimate" and callable(model):
            try:
                model()
                return meter.model_description()  # type: ignore[no-any-return]
            except Exception as exc:  # doctor reports, never crashes
                return {"error": repr(exc)}
    return None


def _render_model(model: dict[str, Any], scope: str) -> list[str]:
    if "error" in model:
        return ["", f"Estimate model: could not be resolved ({model['error']})"]
    cpu, ram, curve = model["cpu"], model["ram"], model["cpu_load_curve"]
    machine = ", ".join(f"{k} {fmt.power_w(v)}" for k, v in curve["machine"].items())
    process = ", ".join(f"{k} {fmt.power_w(v)}" for k, v in curve["process"].items())
    billed = "process (this tree's share of the CPU capacity)" if scope == "process" else "machine (machine load)"
    return [
        "",
        f"Estimate model in force: {model['source']} ({model['resolved_from']})",
        f"  CPU  {cpu['detail']}",
        f"       rule {cpu['rule']}; TDP in force {fmt.power_w(cpu['tdp_w'])}; load curve billed here: {billed}",
        f"       machine curve: {machine}",
        f"       process curve: {process}",
        f"  RAM  {ram['detail']}" + (" × this tree's share of RAM (rss)" if scope == "process" else ""),
    ]


def _render(report: dict[str, Any]) -> str:
    lines = [
        f"mlflow-green {report['mlflow_green_version']} on {report['host']} (Python {report['python']})",
        f"host identity {report['host_id']} (hostname + machine id: how runs tell hosts apart)",
        "",
    ]
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
            if component == "gpu" and chosen["meter"] == "nvml":
                lines.append(f"       {_GPU_BILLING[report['scope']]}")
    lines.append(f"  green.meters = {report['meters_tag']}   (*cpu-time, *rss: this process tree's share)")
    if report["estimated"]:
        lines.append("  Some energy here is an ESTIMATE: runs will be tagged green.estimated=true.")
    lines.append(f"  scope  {_SCOPE_TEXT.get(report['scope'], report['scope'])}")
    if report.get("estimate_model"):
        lines.extend(_render_model(report["estimate_model"], report["scope"]))
    cfg = report["config"]
    lines.append("")
    lines.append("Carbon accounting (offline unless a provider is configured):")
    region_note = (
        " — world average: no region configured (set MLFLOW_GREEN_REGION or region=)"
        if cfg["region"] == "WORLD"
        else ""
    )
    lines.append(f"  region     {cfg['region']} ({cfg['region_name']}){region_note}  [{cfg['sources'].get('region', 'default')}]")
    lines.append(f"  intensity  {fmt.intensity_g_per_kwh(cfg['intensity_g_per_kwh'])} — {cfg['intensity_source']}")
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
@click.option("--scope", default=None, help="Check this scope (process or machine) instead of MLFLOW_GREEN_SCOPE.")
def doctor(as_json: bool, region: str | None, pue: float | None, meters: str | None, scope: str | None) -> None:
    """Which meters work here, and why not; the scope, the estimate's model; the region, intensity and PUE.

    Exits 0, or 2 when the configuration (arguments or MLFLOW_GREEN_* variables) is invalid.
    """
    try:
        config = GreenConfig.resolve(region=region, pue=pue, meters=meters, scope=scope)
        report = diagnose(config)
    except GreenError as exc:  # bad configuration: say what and how to fix it, exit 2
        fail(str(exc), type(exc).__name__, as_json=as_json, exit_code=2)
    click.echo(json.dumps(report, indent=2) if as_json else _render(report))
