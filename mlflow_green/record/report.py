"""Builds the ``green/report.json`` artifact: the full breakdown with provenance (pure, no I/O).

The report holds the schema version, the configuration in force, the carbon intensity and
its source, every meter considered and why it was (not) chosen, faults, totals, the
breakdown per host, device, phase and window (each device with its provenance, scope and the
share it was apportioned by), and each device's idle floor (lowest power seen; gross and
dynamic energy).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlflow_green._version import __version__
from mlflow_green.config import GreenConfig
from mlflow_green.measure.readings import Measurement
from mlflow_green.measure.tracker import EnergyTracker
from mlflow_green.record import schema
from mlflow_green.units import joules_to_kwh, now_iso_utc, unix_s_to_iso_utc


def totals_dict(total: Measurement, config: GreenConfig) -> dict[str, Any]:
    """Run totals in the units users read (kWh, kg) next to SI values."""
    return {
        "energy_j": total.energy_j,
        "energy_kwh": joules_to_kwh(total.energy_j),
        "emissions_kg": config.carbon.emissions_kg(total.energy_j, config.pue),
        "duration_s": total.duration_s,
        "power_w": total.power_w,
        "estimated": total.estimated,
        "provenance": total.provenance,
        "apportioned": total.apportioned,
        "scope": total.scope_tag(),
        "basis_by_component": {
            c: sorted({d.basis for d in total.devices if d.component == c}) for c in total.components
        },
        "energy_kwh_by_component": {c: joules_to_kwh(total.component_energy_j(c)) for c in total.components},
    }


def hosts_dict(total: Measurement) -> dict[str, Any]:
    """Per-host device breakdown."""
    hosts: dict[str, Any] = {}
    for device in total.devices:
        entry = hosts.setdefault(device.host or "unknown", {"energy_j": 0.0, "devices": []})
        entry["energy_j"] += device.energy_j
        entry["devices"].append(device.to_dict())
    return hosts


def _models(tracker: EnergyTracker) -> dict[str, Any]:
    """The power models behind estimated numbers (e.g. CodeCarbon's, with its version and rules)."""
    models: dict[str, Any] = {}
    for choice in tracker.selection.choices if tracker.selection else ():
        describe = getattr(choice.meter, "model_description", None)
        if choice.components and callable(describe):
            try:
                found = describe()
            except Exception:  # a report never fails for a description
                found = None
            if found:
                models[choice.meter.name] = found
    return models


def build_report(
    tracker: EnergyTracker,
    total: Measurement,
    *,
    phases: Mapping[str, Measurement] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report of one tracked run.

    Args:
        tracker: The (stopped) tracker, for configuration, meter selection, faults and windows.
        total: The run total (on rank zero, the sum over every rank).
        phases: Energy per phase (train, validation, data, test, predict), if split.
        extra: Anything the integration adds (model inspection, ranks, budget stop).
    """
    selection = tracker.selection
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "mlflow_green_version": __version__,
        "created_at": now_iso_utc(),
        "started_at": unix_s_to_iso_utc(tracker.started_at_unix_s),
        "config": tracker.config.describe(),
        "meters": {
            "tag": tracker.meters_tag(),
            "considered": [c.to_dict() for c in selection.choices] if selection else [],
            "faults": list(tracker.faults),
            "models": _models(tracker),
            "details": dict(tracker.meter_reports),
        },
        "granularity": tracker.granularity.to_dict(),
        "totals": totals_dict(total, tracker.config),
        "hosts": hosts_dict(total),
        "phases": {name: m.to_dict() for name, m in (phases or {}).items()},
        "idle_floor": tracker.idle_floor.report(total),
        "windows": [w.to_dict() for w in tracker.windows],
        **dict(extra or {}),
    }
