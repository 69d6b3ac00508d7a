"""The MLflow boundary: one background writer per run, so that training never waits on the server.

Every write (the run's creation when MLflow did not answer in time, metrics, tags, the report,
the run's end) is appended to the run's spool file (:mod:`mlflow_green.record.spool`) and sent,
in order, by one background thread. Transient failures (connection, timeout, 5xx, 429) are
retried with backoff (1 s doubling to ``MLFLOW_GREEN_RETRY_MAX_S``, 60 s) while training goes on;
a write the server refuses for good (another 4xx) is kept in ``rejected/`` with MLflow's message
and the next writes go on. ``close()`` waits at most the end timeout (30 s); what is left stays
in the spool and this process keeps sending it while it runs; ``mlflow-green sync`` sends the rest.

Measurement never raises into training: a spool folder that cannot be written (read-only, full,
vanished) is reported once, and the writes go to a fallback folder or, failing that, stay in memory.

Example::

    recorder = RunRecorder(MlflowClient(), run_id)
    recorder.log_metrics({"green/energy_kwh": 0.1}, step=0)   # returns at once
    recorder.close()                                           # sent, or spooled for `mlflow-green sync`
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlflow_green.record import schema
from mlflow_green.record.messages import close_message
from mlflow_green.record.ops import RunSpec
from mlflow_green.record.run_signature import WriteLedger
from mlflow_green.record.spool import canonical_uri
from mlflow_green.record.writer import LIVE, LIVE_LOCK, BackgroundWriter, tracking_uri_of

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlflow_green.record.signing import SigningKey

logger = logging.getLogger(__name__)


class RunRecorder(BackgroundWriter):
    """Writes green metrics, tags and ``green/report.json`` into one MLflow run, asynchronously.

    Args:
        client: The client of the tracking server holding the run (None: made by the writer
            thread on first use, for ``tracking_uri``: making a client can block on a database).
        run_id: The run to write into; or None with ``spec``: the run to create (its creation is
            the first write, made by the background thread; see :meth:`wait_created`).
        tracking_uri: The run's tracking URI (default: the client's, else the current one).
        spec: The run to create.
        owned: mlflow-green started the run (a sync ends it ``KILLED`` if this process dies).
        spool_dir: Where the spool lives (default :func:`~mlflow_green.record.spool.default_spool_dir`).
        timeouts: Bounds on waiting (default from ``MLFLOW_GREEN_*`` variables).

    Example::

        recorder = RunRecorder.open(MlflowClient(), spec=RunSpec(token="ab12", experiment_id="0"))
        recorder.wait_created(2.0)            # the run id, if the server answered within 2 s
    """

    @classmethod
    def open(cls, client: MlflowClient | None = None, run_id: str | None = None, *, spec: RunSpec | None = None,
             tracking_uri: str | None = None, **options: Any) -> RunRecorder:
        """The live writer of this run in this process (shared: each ``open`` needs a ``close``), or a new one."""
        uri = canonical_uri(tracking_uri or tracking_uri_of(client))
        key = (uri, run_id or (spec.token if spec else ""))
        with LIVE_LOCK:
            live = LIVE.get(key)
            if live is not None and live._thread_alive_or_idle():
                if options.get("timeouts") is not None:
                    live.timeouts = options["timeouts"]
                return live.acquire()  # type: ignore[return-value]
            recorder = cls(client, run_id, tracking_uri=uri, spec=spec, **options)
            LIVE[key] = recorder
            return recorder

    # -- writes (never block, never raise) ---------------------------------------------------
    # -- writes (never block, never raise) ---------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, float], step: int, timestamp_ms: int | None = None, *, wait: bool = False,
                    background: bool = False, gather: bool = False) -> bool:
        """Queue metrics at ``step``; non-finite values are dropped with a warning.

        Timestamps strictly increase from one call to the next, so a later value logged at the
        same step (the final totals at the last epoch's step) is always the latest one. They are
        in the spool when this returns; with ``background=True`` (the callbacks, at every epoch) the
        caller only hands them over and the writer thread keeps them in the spool within
        milliseconds (see :meth:`~mlflow_green.record.writer.BackgroundWriter._later`). ``gather=True`` (the epochs'
        thread): kept with the rows of the steps after it until the next write (:meth:`gather`).
        """
        now_ms = int(time.time() * 1000)
        if timestamp_ms is None:
            timestamp_ms = max(now_ms, self._last_timestamp_ms + 1)
        self._last_timestamp_ms = max(self._last_timestamp_ms, timestamp_ms)
        values, at_ms = dict(metrics), int(timestamp_ms)

        def submit() -> None:
            rows = _rows(values, step, at_ms, warn=True)
            if rows:
                self._submit({"op": "metrics", "metrics": rows}, now_ms)

        if gather and not (background or wait):
            self.gather(_rows(values, step, at_ms, warn=True))
        elif background and not wait:
            self._later(submit)
        else:
            submit()
        return self.flush() if wait else True

    def gather(self, rows: list[list[Any]]) -> None:
        """Keep metrics rows until the next write, flush or :meth:`send_gathered`, which spools them all as one entry
        (the epochs' thread gathers the steps it accounted on one wake-up: one spool line instead of one a step)."""
        with self._cond:
            self._outbox.extend(rows)

    def send_gathered(self) -> None:
        """Spool and queue the gathered rows now."""
        with self._cond:
            self._take_intake()

    def log_tags(self, tags: Mapping[str, str], *, background: bool = False) -> bool:
        """Queue run tags (``background=True``: handed to the spool thread, see :meth:`log_metrics`)."""
        if not tags:
            return True
        values = {str(k): str(v) for k, v in tags.items()}
        if background:
            now_ms = int(time.time() * 1000)
            self._later(lambda: self._submit({"op": "tags", "tags": values}, now_ms))
        else:
            self._submit({"op": "tags", "tags": values})
        return True

    def log_report(self, report: Mapping[str, Any]) -> bool:
        """Queue ``green/report.json``."""
        self._submit({"op": "report", "report": dict(report), "artifact_file": schema.REPORT_ARTIFACT})
        return True

    def terminate(self, status: str) -> None:
        """Queue the end of the run (``FINISHED``, ``FAILED`` or ``KILLED``), timed now."""
        self._submit({"op": "terminate", "status": status, "end_time_ms": int(time.time() * 1000)})

    def hold_metrics(self, metrics: Mapping[str, float], step: int, *, background: bool = False) -> None:
        """Keep the metrics of a step that is not complete yet in the spool only, not sent.

        They are sent by the next :meth:`log_metrics` at ``step`` (with the step's final values), or,
        if this process dies first, by the replay of its spool — so a killed training keeps its last
        completed step without MLflow ever getting two points at one step. Each call replaces the
        previous hold.
        """
        now_ms = int(time.time() * 1000)
        values, at_ms = dict(metrics), max(now_ms, self._last_timestamp_ms + 1)

        def hold() -> None:
            rows = _rows(values, step, at_ms, warn=False)
            if rows:
                self._hold({"op": "metrics", "metrics": rows}, now_ms)

        if background:  # handed to the writer thread, which keeps it in the spool within milliseconds
            self._later(hold)
        else:
            hold()

    def submit(self, op: str, **fields: Any) -> None:
        """Queue an operation registered with :func:`mlflow_green.record.ops.register_operation`."""
        self._submit({"op": op, **fields})

    def sign(self, key: SigningKey) -> None:
        """Queue the signature of the run's green values: sent after every write queued before it, so
        it happens once they reached the server, even if that is after a spooled outage
        (:mod:`mlflow_green.record.run_signature`)."""
        with self._cond:
            self._take_intake()  # the writes handed to the writer thread are part of what is signed
            self._submit(self._signing_ledger().sign_entry(key))

    def _signing_ledger(self) -> WriteLedger:
        ledger = self.__dict__.get("_ledger")
        if ledger is None:
            ledger = self.__dict__["_ledger"] = WriteLedger()
        return ledger

    def _submit(self, entry: dict[str, Any], t_ms: int | None = None) -> None:
        self._signing_ledger().observe(entry)  # what this writer sent, checked before signing
        super()._submit(entry, t_ms)

    def close(self, timeout_s: float | None = None) -> bool:
        """Flush (at most the end timeout) and release this writer; reports exactly what is not sent yet.

        Unsent writes stay spooled; this process keeps sending them while it runs.
        """
        if self._forked:  # a forked child: the parent's writer, which the parent closes
            return True
        started = time.monotonic()
        budget_s = self.timeouts.end_s if timeout_s is None else timeout_s
        with self._cond:
            self._refs -= 1
            last = self._refs <= 0
            if last:
                self._closed = True
                self.wake_all()
        done = self.flush(budget_s)
        if last:
            thread = self._thread
            if done and thread is not None and thread.is_alive():
                thread.join(max(budget_s - (time.monotonic() - started), 0.0))
            elif done:
                self._finish()
            message = close_message(self)
            if message:
                logger.warning("%s", message)
        return done


def _rows(metrics: Mapping[str, float], step: int, timestamp_ms: int, *, warn: bool) -> list[list[Any]]:
    """``[key, value, timestamp_ms, step]`` rows; non-finite values are left out (with a warning if ``warn``)."""
    timestamp_ms, step = int(timestamp_ms), int(step)
    try:  # the usual case, at every epoch: every value a finite number
        rows = [[key, float(value), timestamp_ms, step] for key, value in metrics.items()]
        if all(math.isfinite(row[1]) for row in rows):
            return rows
    except (TypeError, ValueError):
        pass
    rows = []
    for key, value in metrics.items():
        if value is None or not math.isfinite(float(value)):
            if warn:
                logger.warning("mlflow-green: not logging %s=%r (not a finite number)", key, value)
            continue
        rows.append([key, float(value), int(timestamp_ms), int(step)])
    return rows


__all__ = ["RunRecorder"]
