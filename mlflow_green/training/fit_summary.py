"""What a session writes besides running totals: the ``green.*`` tags and ``green/report.json``.

Pure functions of the session's state (no I/O): the session hands the results to its
:class:`~mlflow_green.training.session_run.SessionRun`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlflow_green._version import __version__
from mlflow_green.measure import hardware
from mlflow_green.measure.readings import Measurement
from mlflow_green.measure.tracker import EnergyTracker
from mlflow_green.record import schema
from mlflow_green.record.metrics import measured_gpus, run_tags
from mlflow_green.record.report import build_report

if TYPE_CHECKING:
    from mlflow_green.training.session import TrainingSession


def session_tags(session: TrainingSession, tracker: EnergyTracker, total: Measurement | None = None) -> dict[str, str]:
    """The ``green.*`` run tags: meters, provenance, carbon, hardware, ranks, compression, quality, budget."""
    cfg = session.config
    tags = run_tags(
        version=__version__,
        meters=tracker.meters_tag(),
        estimated=total.estimated if total is not None else estimated_so_far(tracker),
        carbon=cfg.carbon,
        pue=cfg.pue,
        cpu=hardware.cpu_model(),
        gpu=measured_gpus(total) if total is not None else None,
        hosts=session.dist.hosts,
        world_size=session.dist.world_size,
        scope=total.scope_tag() if total is not None else "",
    )
    if session.profile is not None:
        tags[schema.TAG_COMPRESSION] = session.profile.compression_tag()
    if session.quality is not None:
        tags[schema.TAG_QUALITY_METRIC] = session.quality[0]
    elif session.quality_metric:
        tags[schema.TAG_QUALITY_METRIC] = session.quality_metric
    if session.stop_reason:
        tags[schema.TAG_BUDGET_STOP] = session.stop_reason
    return tags


def session_report(session: TrainingSession, tracker: EnergyTracker, total: Measurement, status: str,
                   run_total: Measurement | None = None, *, evaluations_only: bool = False) -> dict[str, Any]:
    """``green/report.json``: the tracker's breakdown plus the session's phases, epochs, model and budget.

    ``run_total``: the run's running total as this fit leaves it (the state a later callback continues
    from); default the totals carried so far (an evaluation's report does not change them).
    ``evaluations_only``: the run holds no fit, ``total`` is its evaluations' energy."""
    phases = session.report_phases(total, evaluations_in_total=evaluations_only)
    return build_report(
        tracker,
        total,
        phases=phases,
        extra={
            "framework": session.framework,
            "status": status,
            "epochs": session.epochs,
            "samples": dict(session.samples),
            "quality": {"metric": session.quality[0], "value": session.quality[1]} if session.quality else None,
            "model": session.profile.to_dict() if session.profile is not None else None,
            "budget": {
                "max_energy_kwh": session.budget.max_energy_kwh,
                "max_emissions_kg": session.budget.max_emissions_kg,
                "stopped": session.stop_reason,
            },
            "resumed_from": session.resumed_from,
            # what a later fit with another callback in this run continues from (training.run_history)
            "state": session.run_state(run_total).to_dict(),
            "distributed": {
                "world_size": session.dist.world_size,
                "hosts": session.dist.hosts,
                "ranks": session.dist.rank_totals,
                "gathered_at_end": session.dist.gathered_at_end,
            },
        },
    )


def estimated_so_far(tracker: EnergyTracker) -> bool:
    """Whether the tracker's devices are estimates (True when nothing is measured)."""
    try:
        devices = tracker.start_snapshot.devices
        return devices == () or any(d.provenance == "estimate" for d in devices)
    except Exception:
        return True
