"""What earlier fits left in a run that a new callback logs into: their totals, so that it continues them.

A fresh callback (a new ``GreenCallback()`` for a second ``fit``, a script restarted with
``mlflow.start_run(run_id=...)`` after a crash, Keras's ``BackupAndRestore``) that logs into a run
holding an earlier fit's ``green/`` figures continues that run's running totals and steps, as the
same callback would: the earlier fit's ``green/report.json`` holds its session state. A run whose
earlier fit left no report (killed) continues its steps only, with a warning.

Example:
    >>> earlier = EarlierFits(state=None, last_step=4)
    >>> earlier.last_step
    4
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlflow_green.measure.readings import Measurement
from mlflow_green.record import schema
from mlflow_green.record.creation import find_runs
from mlflow_green.record.latest_steps import latest_steps, table_latest_steps
from mlflow_green.record.timeouts import is_local_store
from mlflow_green.training.state import SessionState

logger = logging.getLogger(__name__)


EVALUATION_KINDS = ("test", "predict", "validate")
"""The evaluations outside a fit whose running totals a new callback in the run continues."""


@dataclass(frozen=True)
class EarlierFits:
    """The run's state as the earlier fits left it (None without a report) and its last ``green/`` step; the
    evaluations' running totals (from the report) and the last step of each evaluation metric logged."""

    state: SessionState | None
    last_step: int | None
    evaluations: dict[str, Measurement] = field(default_factory=dict)
    evaluation_samples: dict[str, int] = field(default_factory=dict)  # the report's, also of a run holding no fit
    key_steps: dict[str, int] = field(default_factory=dict)
    block: bool = False  # the figures are a ``track()`` block's (no fit state to continue)


FIGURE_KEYS = (schema.ENERGY_KWH, *(key for kind in EVALUATION_KINDS
                                    for key in (schema.phase_energy_key(kind), schema.phase_energy_per_sample_key(kind))))
"""The metrics whose latest steps tell what earlier fits and evaluations logged."""


LOCAL_READ_WAIT_MS = 100
"""How long the training thread's read of a local sqlite store waits for a lock another connection holds (a long write
of another process) before it gives the question to the bounded worker-thread read."""


def holds_no_earlier_figures(client: Any, run_id: str, tracking_uri: str | None) -> bool:
    """True where ``run_id``'s store is a sqlite file on this machine and its table shows no ``green/`` figures there
    (the usual case: a new run of the user's). Read on the calling thread (~1 ms): a file on this machine's disk is
    not a server that can be down, and a worker thread's start and hand-back cost as much again; a database another
    process holds locked is waited for :data:`LOCAL_READ_WAIT_MS` at most. False where it is not known so: another
    store, a failed or locked read, figures found (:func:`earlier_fits` reads them)."""
    if not (is_local_store(tracking_uri) and str(tracking_uri).lower().startswith("sqlite:")):
        return False
    return table_latest_steps(client, run_id, FIGURE_KEYS, sqlite_wait_ms=LOCAL_READ_WAIT_MS) == {}


def earlier_fits(client: Any, run_id: str) -> EarlierFits | None:
    """What earlier fits and evaluations logged into ``run_id`` (None: nothing ``green/`` of theirs).

    One read of the keys' latest steps when the run holds none (the usual case: a new run of the user's; see
    :func:`~mlflow_green.record.latest_steps.latest_steps`), then its report; never
    raises (an unreachable server: None, as for a new run).
    """
    try:
        key_steps = latest_steps(client, run_id, FIGURE_KEYS)
    except Exception as exc:  # the server went away: as for a new run
        logger.debug("mlflow-green: could not read run %s's earlier fits: %r", run_id, exc)
        return None
    if not key_steps:
        return None
    last_step = key_steps.pop(schema.ENERGY_KWH, None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            with open(client.download_artifacts(run_id, schema.REPORT_ARTIFACT, tmp), encoding="utf-8") as f:
                report = json.load(f)
        if "state" not in report and "framework" not in report:  # a track() block's report
            return EarlierFits(None, last_step, key_steps=key_steps, block=True)
        state = SessionState.from_dict(report["state"]) if last_step is not None else None
        evaluations = {kind: Measurement.from_dict(report["phases"][kind]) for kind in EVALUATION_KINDS
                       if kind in report.get("phases", {})}
        evaluated = {kind: int(n) for kind, n in (report.get("samples") or {}).items() if kind in evaluations}
    except Exception as exc:  # no report (a killed fit), or one written before reports held the state
        logger.warning("mlflow-green: run %s holds green/ figures of an earlier fit but no state in its %s (%s): its "
                       "steps are continued, its totals start again from zero", run_id, schema.REPORT_ARTIFACT,
                       type(exc).__name__)
        return EarlierFits(None, last_step, key_steps=key_steps)
    if state is not None and last_step is not None:
        last_step = max(last_step, state.last_step or 0)
    return EarlierFits(state, last_step, evaluations, evaluated, key_steps)


def created_run_id(client: Callable[[], Any], pending_run: dict[str, str | None]) -> str | None:
    """The id of the run a checkpoint's ``pending_run`` names (created since, and tagged with its token), or None."""
    token, experiment_id = pending_run.get("token"), pending_run.get("experiment_id")
    if not token:
        return None
    mlflow_client = client()
    if experiment_id is None and pending_run.get("experiment_name"):
        experiment = mlflow_client.get_experiment_by_name(pending_run["experiment_name"])
        experiment_id = experiment.experiment_id if experiment is not None else None
    if experiment_id is None:
        return None
    runs = find_runs(mlflow_client, experiment_id, token)
    return runs[0].info.run_id if runs else None


__all__ = ["EVALUATION_KINDS", "EarlierFits", "created_run_id", "LOCAL_READ_WAIT_MS", "earlier_fits", "holds_no_earlier_figures"]
