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
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_green.record import schema
from mlflow_green.record.failures import describe, is_transient
from mlflow_green.record.messages import WriteCounts, close_message, spool_problem_message
from mlflow_green.record.ops import RunSpec, send
from mlflow_green.record.spool import SpoolFile, canonical_uri, default_spool_dir, fallback_spool_dir
from mlflow_green.record.timeouts import RunTimeouts

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

logger = logging.getLogger(__name__)

_LIVE: dict[tuple[str, str], RunRecorder] = {}
_LIVE_LOCK = threading.Lock()


class RunRecorder:
    """Writes green metrics, tags and ``green/report.json`` into one MLflow run, asynchronously.

    Args:
        client: The client of the tracking server holding the run.
        run_id: The run to write into; or None with ``spec``: the run to create (its creation is
            the first write, made by the background thread; see :meth:`wait_created`).
        spec: The run to create.
        owned: mlflow-green started the run (a sync ends it ``KILLED`` if this process dies).
        spool_dir: Where the spool lives (default :func:`~mlflow_green.record.spool.default_spool_dir`).
        timeouts: Bounds on waiting (default from ``MLFLOW_GREEN_*`` variables).

    Example::

        recorder = RunRecorder.open(MlflowClient(), spec=RunSpec(token="ab12", experiment_id="0"))
        recorder.wait_created(2.0)            # the run id, if the server answered within 2 s
    """

    def __init__(
        self,
        client: MlflowClient | None = None,
        run_id: str | None = None,
        *,
        tracking_uri: str | None = None,
        spec: RunSpec | None = None,
        owned: bool = False,
        spool_dir: str | os.PathLike[str] | None = None,
        timeouts: RunTimeouts | None = None,
    ) -> None:
        if run_id is None and spec is None:
            raise ValueError("RunRecorder needs a run_id or a spec of the run to create")
        self._client = client
        self._client_lock = threading.Lock()
        self.run_id = run_id
        self.spec = spec
        self.owned = owned
        self.tracking_uri = canonical_uri(tracking_uri or _tracking_uri(client))
        self.timeouts = timeouts or RunTimeouts.resolve()
        self.failures: list[str] = []
        self.counts = WriteCounts()
        self.creation_error: str | None = None
        self.created_run: Run | None = None
        self.spool: SpoolFile | None = None
        self.spool_problem: str | None = None
        self._spool_dir = Path(spool_dir) if spool_dir is not None else default_spool_dir()
        self._cond = threading.Condition()
        self._queue: deque[dict[str, Any]] = deque()
        self._unspooled: set[int] = set()
        self._seq = 0
        self._last_timestamp_ms = 0
        self._refs = 1
        self._closed = False
        self._thread: threading.Thread | None = None
        self._problem_reported = False
        self._stopped = False
        self._last_spool_error: tuple[Path, BaseException] | None = None
        if not self._open_spool(self._spool_dir):
            failed_folder, error = self._last_spool_error or (self._spool_dir, OSError("unknown error"))
            self._spool_failed(failed_folder, error, backlog=[])
        if spec is not None and run_id is None:
            self._submit({"op": "create", "run": spec.to_dict()})

    @property
    def client(self) -> MlflowClient:
        """The client (made on first use, by the writer thread: making one can block on a database)."""
        with self._client_lock:
            if self._client is None:
                from mlflow import MlflowClient

                self._client = MlflowClient(self.tracking_uri or None)
            return self._client

    @classmethod
    def open(cls, client: MlflowClient | None = None, run_id: str | None = None, *, spec: RunSpec | None = None,
             tracking_uri: str | None = None, **options: Any) -> RunRecorder:
        """The live writer of this run in this process (shared: each ``open`` needs a ``close``), or a new one."""
        uri = canonical_uri(tracking_uri or _tracking_uri(client))
        key = (uri, run_id or (spec.token if spec else ""))
        with _LIVE_LOCK:
            live = _LIVE.get(key)
            if live is not None and live._thread_alive_or_idle():
                if options.get("timeouts") is not None:
                    live.timeouts = options["timeouts"]
                return live.acquire()
            recorder = cls(client, run_id, tracking_uri=uri, spec=spec, **options)
            _LIVE[key] = recorder
            return recorder

    def acquire(self) -> RunRecorder:
        """One more user of this writer (each needs its own :meth:`close`)."""
        with self._cond:
            self._refs = max(self._refs, 0) + 1
            self._closed = False
        return self

    # -- writes (never block, never raise) ---------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, float], step: int, timestamp_ms: int | None = None, *, wait: bool = False) -> bool:
        """Queue metrics at ``step``; non-finite values are dropped with a warning.

        Timestamps strictly increase from one call to the next, so a later value logged at the
        same step (the final totals at the last epoch's step) is always the latest one.
        """
        if timestamp_ms is None:
            timestamp_ms = max(int(time.time() * 1000), self._last_timestamp_ms + 1)
        self._last_timestamp_ms = max(self._last_timestamp_ms, timestamp_ms)
        rows = []
        for key, value in metrics.items():
            if value is None or not math.isfinite(float(value)):
                logger.warning("mlflow-green: not logging %s=%r (not a finite number)", key, value)
                continue
            rows.append([key, float(value), int(timestamp_ms), int(step)])
        if rows:
            self._submit({"op": "metrics", "metrics": rows})
        return self.flush() if wait else True

    def log_tags(self, tags: Mapping[str, str]) -> bool:
        """Queue run tags."""
        if tags:
            self._submit({"op": "tags", "tags": {str(k): str(v) for k, v in tags.items()}})
        return True

    def log_report(self, report: Mapping[str, Any]) -> bool:
        """Queue ``green/report.json``."""
        self._submit({"op": "report", "report": dict(report), "artifact_file": schema.REPORT_ARTIFACT})
        return True

    def terminate(self, status: str) -> None:
        """Queue the end of the run (``FINISHED``, ``FAILED`` or ``KILLED``), timed now."""
        self._submit({"op": "terminate", "status": status, "end_time_ms": int(time.time() * 1000)})

    def submit(self, op: str, **fields: Any) -> None:
        """Queue an operation registered with :func:`mlflow_green.record.ops.register_operation`."""
        self._submit({"op": op, **fields})

    # -- waiting (bounded) --------------------------------------------------------------------
    def wait_created(self, timeout_s: float) -> str | None:
        """Wait at most ``timeout_s`` for the run to exist; its id, or None (creation still pending or refused)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.run_id is None and self.creation_error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self.run_id

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued write was handled (sent or set aside); False if some are still pending."""
        deadline = time.monotonic() + (self.timeouts.end_s if timeout_s is None else timeout_s)
        with self._cond:
            while self._queue:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout_s: float | None = None) -> bool:
        """Flush (at most the end timeout) and release this writer; reports exactly what is not sent yet.

        Unsent writes stay spooled; this process keeps sending them while it runs.
        """
        started = time.monotonic()
        budget_s = self.timeouts.end_s if timeout_s is None else timeout_s
        with self._cond:
            self._refs -= 1
            last = self._refs <= 0
            if last:
                self._closed = True
                self._cond.notify_all()
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

    def stop(self) -> None:
        """Stop the background writer now, as if this process ended: what is not sent stays spooled (unlocked).

        ``mlflow-green sync`` (or a later training) sends it. The writer starts again on the next write.
        """
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=0.5)  # it may be inside one of MLflow's requests: never wait on that
        spool, self.spool = self.spool, None
        if spool is not None:
            spool.release()
        with _LIVE_LOCK:
            for key in [key for key, value in _LIVE.items() if value is self]:
                del _LIVE[key]

    def backlog(self) -> tuple[list[dict[str, Any]], set[int]]:
        """The entries not handled yet, and the ``seq`` of those that are in no spool file (memory only)."""
        with self._cond:
            return list(self._queue), set(self._unspooled)

    @property
    def pending(self) -> int:
        """Writes not yet handled."""
        with self._cond:
            return len(self._queue)

    # -- internals ---------------------------------------------------------------------------
    def _submit(self, entry: dict[str, Any]) -> None:
        with self._cond:
            self._seq += 1
            entry = {"seq": self._seq, "t_ms": int(time.time() * 1000), **entry}
            self._stopped = False
            self._keep(entry)
            self._queue.append(entry)
            if entry["op"] != "create":
                self.counts.submitted += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mlflow-green-writer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _keep(self, entry: dict[str, Any]) -> None:
        """Append ``entry`` to the spool; on failure move the backlog to a new spool file, else keep it in memory."""
        if self.spool is not None:
            try:
                self.spool.append(entry)
                return
            except (OSError, ValueError) as exc:
                failed, self.spool = self.spool, None
                failed.release()
                self._spool_failed(failed.path.parent, exc, backlog=[*self._queue, entry])
        elif self._open_spool(self._spool_dir, backlog=[*self._queue, entry]):  # e.g. space was freed
            return
        if self.spool is None:
            self._unspooled.add(entry["seq"])

    def _open_spool(self, folder: Path, backlog: list[dict[str, Any]] | None = None) -> bool:
        """A new spool file in ``folder`` holding ``backlog``; False (and ``self.spool`` None) if it cannot be."""
        header = {"tracking_uri": self.tracking_uri, "run_id": self.run_id, "owned": self.owned,
                  "token": self.spec.token if self.spec else None}
        try:
            spool = SpoolFile.create(folder, header)
            try:
                for entry in backlog or ():
                    spool.append(entry)
            except BaseException:
                spool.remove()
                raise
        except (OSError, ValueError) as exc:
            self._last_spool_error = (folder, exc)
            return False
        self.spool = spool
        self._unspooled.difference_update(entry["seq"] for entry in backlog or ())
        return True

    def _spool_failed(self, folder: Path, exc: BaseException, backlog: list[dict[str, Any]]) -> None:
        """The spool in ``folder`` failed: try a new file there, then the fallback folder; report once."""
        for candidate in dict.fromkeys((folder, self._spool_dir, fallback_spool_dir())):
            if self._open_spool(candidate, backlog):
                break
        self.spool_problem = f"{folder}: {describe(exc)}"
        moved_to = self.spool.path if self.spool is not None else None
        if not self._problem_reported:
            self._problem_reported = True
            logger.warning("%s", spool_problem_message(self, folder, exc, moved_to))

    def _run(self) -> None:
        backoff_s = self.timeouts.retry_start_s
        first_try = True
        while True:
            with self._cond:
                while not self._queue and not self._closed and not self._stopped:
                    self._cond.wait(5.0)
                if self._stopped:
                    return
                entry = self._queue[0] if self._queue else None
            if entry is None:
                self._finish()
                return
            if self.spool is not None:
                self.spool.sync_to_disk()
            error = self._creation_failed_reason(entry)
            if error is None:
                try:
                    sent = send(self.client, entry, self.run_id, first_try=first_try and entry["op"] == "create")
                except Exception as exc:
                    if entry["op"] == "create":
                        first_try = False
                    if is_transient(exc):
                        self._transient(exc, backoff_s)
                        with self._cond:
                            self._cond.wait_for(lambda: self._stopped, timeout=backoff_s)
                        backoff_s = min(backoff_s * 2, self.timeouts.retry_max_s)
                        continue
                    error = describe(exc)
                else:
                    backoff_s = self.timeouts.retry_start_s
                    self.created_run = sent.run if sent.run is not None else self.created_run
                    self._done(entry, sent.run_id)
                    continue
            self._set_aside(entry, error)

    def _creation_failed_reason(self, entry: Mapping[str, Any]) -> str | None:
        if self.creation_error is not None and entry["op"] != "create":
            return f"the run could not be created: {self.creation_error}"
        return None

    def _transient(self, exc: BaseException, backoff_s: float) -> None:
        message = describe(exc)
        if not self.failures or self.failures[-1] != message:
            logger.warning("mlflow-green: writing to %s failed (%s); retrying in %g s", self._label(), message, backoff_s)
        self.failures.append(message)

    def _done(self, entry: dict[str, Any], run_id: str) -> None:
        if entry["op"] == "create":
            with _LIVE_LOCK:  # never taken while holding self._cond (open() takes them in this order)
                _LIVE.setdefault((self.tracking_uri, run_id), self)
        with self._cond:
            if entry["op"] == "create":
                self.run_id = run_id
            else:
                self.counts.sent += 1
        self._progress(entry, run_id if entry["op"] == "create" else None)

    def _set_aside(self, entry: dict[str, Any], reason: str) -> None:
        logger.warning("mlflow-green: the tracking server refused a write (%s) to %s: %s", entry["op"], self._label(), reason)
        with self._cond:
            if entry["op"] == "create":
                self.creation_error = reason
            else:
                self.counts.rejected += 1
                self.counts.reasons.append(reason)
        kept = False
        if self.spool is not None:
            try:
                self.counts.rejected_file = self.spool.reject(entry, reason)
                kept = True
            except OSError:
                pass
        if not kept:
            self.counts.rejected_lost += 1 if entry["op"] != "create" else 0
        self._progress(entry)

    def _progress(self, entry: dict[str, Any], run_id: str | None = None) -> None:
        if self.spool is not None:
            try:
                self.spool.mark_done(entry["seq"], run_id)
            except OSError as exc:
                if self.counts.progress_problem is None:
                    self.counts.progress_problem = describe(exc)
        with self._cond:
            if self._queue and self._queue[0] is entry:
                self._queue.popleft()
            self._unspooled.discard(entry["seq"])
            self._cond.notify_all()

    def _finish(self) -> None:
        """Everything was handled and the writer was closed: delete the spool file."""
        spool, self.spool = self.spool, None
        if spool is not None:
            try:
                spool.remove()
            except OSError as exc:
                self.counts.remove_problem = f"{spool.path}: {describe(exc)}"
        with _LIVE_LOCK:
            for key in [key for key, value in _LIVE.items() if value is self]:
                del _LIVE[key]

    def _thread_alive_or_idle(self) -> bool:
        return self._thread is None or self._thread.is_alive() or not self._closed

    def _label(self) -> str:
        if self.run_id:
            return f"run {self.run_id}"
        name = self.spec.run_name if self.spec and self.spec.run_name else None
        return f"the new run {name!r}" if name else "the new run"

    def label(self) -> str:
        """The run as users know it: ``run <id>``, or the new run (not created yet)."""
        return self._label()


def _tracking_uri(client: Any) -> str:
    """The tracking URI of ``client`` (None: the current one)."""
    uri = None
    if client is not None:
        uri = getattr(client, "tracking_uri", None) or getattr(getattr(client, "_tracking_client", None), "tracking_uri", None)
    if isinstance(uri, str):
        return uri
    try:
        import mlflow

        return mlflow.get_tracking_uri()
    except Exception:
        return ""


__all__ = ["RunRecorder"]
