"""The MLflow run a training session logs into, and every write into it.

This is the session's one seam with MLflow: where the run is chosen (:meth:`SessionRun.bind`),
where metrics, tags and the report are queued (:meth:`~SessionRun.log`, :meth:`~SessionRun.log_tags`,
:meth:`~SessionRun.log_report`) and where everything is flushed and a run we started is ended
(:meth:`~SessionRun.close`). Writes go through a :class:`~mlflow_green.record.recorder.RunRecorder`:
queued, sent by a background thread, spooled when the server is unreachable.

Example::

    out = SessionRun(run_name="baseline")
    out.bind()                                  # the active run, or a new one we own
    out.log({"green/energy_kwh": 0.1}, step=0)  # returns at once
    out.close("FINISHED")                       # sent (or spooled); our own run is ended
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mlflow_green.record.recorder import RunRecorder
from mlflow_green.record.runs import RunHandle, resolve_run

logger = logging.getLogger(__name__)


class SessionRun:
    """The run of one session (bound lazily, at the first fit or evaluation).

    Args:
        run_name: Name of the run started when there is no active run.

    Attributes:
        run: The bound run, or None (not bound yet, or not the logging rank, or MLflow unreachable).
        run_id: Id of the last run bound (kept after the run is closed).
    """

    def __init__(self, run_name: str | None = None) -> None:
        self.run_name = run_name
        self.run: RunHandle | None = None
        self.run_id: str | None = None
        self.recorder: RunRecorder | None = None

    @property
    def bound(self) -> bool:
        """True if writes go somewhere."""
        return self.recorder is not None

    @property
    def owned(self) -> bool:
        """True if the bound run was started by us (so we end it)."""
        return self.run is not None and self.run.owned

    def bind(self, run: RunHandle | None = None, **resolve: Any) -> bool:
        """Log into ``run``, else resolve one (explicit id, active run, or a new one we own).

        Returns True if the run is a different one from the run bound before (the caller
        starts its totals over). An unreachable server is a warning: training goes on unlogged.
        """
        if run is None and self.owned:
            return False  # a fit in progress keeps its run
        try:
            if run is None:
                run = resolve_run(run_name=self.run_name, **resolve)
        except Exception as exc:  # an unreachable server never stops the training
            logger.warning("mlflow-green: no MLflow run to log into (%s); measuring without logging", exc)
            return False
        changed = self.run_id is not None and run.run_id != self.run_id
        self.run, self.run_id = run, run.run_id
        self.recorder = RunRecorder(run.client, run.run_id)
        return changed

    # -- writes (queued, never raise) -----------------------------------------------------------
    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue metrics at ``step`` (the writer thread sends them in order; training never waits)."""
        if self.recorder is not None and metrics:
            self.recorder.log_metrics(metrics, step=step)

    def log_tags(self, tags: Mapping[str, str]) -> None:
        """Queue run tags."""
        if self.recorder is not None and tags:
            self.recorder.log_tags(tags)

    def log_report(self, report: Mapping[str, Any]) -> None:
        """Queue ``green/report.json``."""
        if self.recorder is not None:
            self.recorder.log_report(report)

    def flush(self) -> None:
        """Wait (bounded) until every queued write reached the server."""
        if self.recorder is not None:
            self.recorder.flush()

    def close(self, status: str) -> None:
        """Send (or spool) everything written, then end the run if we started it."""
        if self.recorder is not None:
            self.recorder.close()
        if self.run is not None and self.run.owned:
            self.run.end(status, recorder=self.recorder)
