"""The MLflow run a training session logs into, and every write into it.

This is the session's one seam with MLflow: where the run is chosen (:meth:`SessionRun.bind`),
where metrics, tags and the report are queued (:meth:`~SessionRun.log`, :meth:`~SessionRun.log_tags`,
:meth:`~SessionRun.log_report`) and where everything is flushed and a run we started is ended
(:meth:`~SessionRun.close`). Writes go through a :class:`~mlflow_green.record.recorder.RunRecorder`:
queued, sent by a background thread, spooled when the server is unreachable. Binding waits at
most ``timeouts.start_s`` for MLflow and closing at most ``timeouts.end_s`` (see
:mod:`mlflow_green.record.timeouts`); the session starts its meters after binding and stops
them before closing, so that this waiting is never billed as training.

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

from mlflow_green.record.runs import RunHandle, resolve_run
from mlflow_green.record.timeouts import RunTimeouts

logger = logging.getLogger(__name__)


class SessionRun:
    """The run of one session (bound lazily, at the first fit or evaluation).

    Args:
        run_name: Name of the run started when there is no active run.
        timeouts: Bounds on waiting for MLflow (default: ``MLFLOW_GREEN_*`` variables at bind time).

    Attributes:
        run: The run bound for the current fit, or None.
    """

    def __init__(self, run_name: str | None = None, timeouts: RunTimeouts | None = None) -> None:
        self.run_name = run_name
        self.timeouts = timeouts
        self.run: RunHandle | None = None
        self._last: RunHandle | None = None  # the run of the last fit, for writes after it (an evaluation)
        self._run_id: str | None = None
        self._reopened = False

    @property
    def run_id(self) -> str | None:
        """Id of the last run bound (None while a run we started waits for MLflow to create it)."""
        for handle in (self.run, self._last):
            if handle is not None and handle.run_id is not None:
                self._run_id = handle.run_id
                break
        return self._run_id

    @property
    def bound(self) -> bool:
        """True if writes go somewhere."""
        return self.run is not None or self._last is not None

    @property
    def owned(self) -> bool:
        """True if the bound run was started by us (so we end it)."""
        return self.run is not None and self.run.owned

    def bind(self, run: RunHandle | None = None, **resolve: Any) -> bool:
        """Log into ``run``, else resolve one (explicit id, active run, or a new one we own).

        Returns True if the run is a different one from the run bound before (the caller
        starts its totals over). Waits at most the start timeout; never raises for MLflow.
        """
        if run is None and self.owned:
            return False  # a fit in progress keeps its run
        previous = self.run_id
        try:
            if run is None:
                run = resolve_run(run_name=self.run_name, timeouts=self.timeouts, **resolve)
            run.recorder  # noqa: B018 - opens its writer now
        except Exception as exc:  # measurement never stops the training
            logger.warning("mlflow-green: no MLflow run to log into (%s); measuring without logging", exc)
            return False
        if self.run is not None and self.run is not run:
            self.run.finish()
        self.run, self._last, self._reopened = run, None, False
        current = run.run_id
        return previous is not None and (current is None or current != previous)

    # -- writes (queued, never raise) -----------------------------------------------------------
    def _handle(self) -> RunHandle | None:
        """The run to write into; after a fit, a writer is reopened on its run (ended by the next flush/close)."""
        if self.run is None and self._last is not None:
            last = self._last
            self.run = last.share() if last.pending else RunHandle(
                last._client, last.run_id, timeouts=self.timeouts, tracking_uri=last.recorder.tracking_uri)
            self._reopened = True
        return self.run

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue metrics at ``step`` (the writer thread sends them in order; training never waits)."""
        handle = self._handle() if metrics else None
        if handle is not None:
            handle.recorder.log_metrics(metrics, step=step)

    def log_tags(self, tags: Mapping[str, str]) -> None:
        """Queue run tags."""
        handle = self._handle() if tags else None
        if handle is not None:
            handle.recorder.log_tags(tags)

    def log_report(self, report: Mapping[str, Any]) -> None:
        """Queue ``green/report.json``."""
        handle = self._handle()
        if handle is not None:
            handle.recorder.log_report(report)

    def flush(self) -> None:
        """Wait (at most the end timeout) until every queued write reached the server.

        Between fits (writes reopened on the last run) this also releases the writer.
        """
        if self.run is None:
            return
        if self._reopened:
            self.close("FINISHED")
        else:
            self.run.recorder.flush()

    def close(self, status: str) -> None:
        """End the run if we started it; send (or spool) everything, waiting at most the end timeout.

        Never raises. Writes made afterwards (an evaluation after the fit) go into the same run.
        """
        run, self.run = self.run, None
        if run is None:
            return
        run.finish(status)
        if not self._reopened:
            self._last = run
        self._reopened = False
