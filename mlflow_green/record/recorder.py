"""The MLflow boundary: writes metrics, tags and the report of one run, never blocking training.

Every write is appended to the run's crash-safe spool (:mod:`mlflow_green.record.spool`) and sent, in
order, by one background thread. When the tracking server is unreachable or failing, the thread
retries with exponential backoff (1 s doubling to 60 s) while training goes on; ``close()``
waits a bounded time for the backlog; whatever is left stays in the spool file and is replayed
by the next writer of that run or by ``mlflow-green sync``.

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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlflow_green.record import schema
from mlflow_green.record.spool import RunSpool, default_spool_dir

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

ENV_FLUSH_TIMEOUT_S = "MLFLOW_GREEN_FLUSH_TIMEOUT_S"
DEFAULT_FLUSH_TIMEOUT_S = 30.0
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
_MAX_METRICS_PER_BATCH = 1000
_MAX_TAGS_PER_BATCH = 100


def apply_op(client: MlflowClient, run_id: str, op: Mapping[str, Any]) -> None:
    """Send one spooled write to MLflow (raises on failure)."""
    from mlflow.entities import Metric, RunTag

    kind = op["op"]
    if kind == "metrics":
        entries = [Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in op["metrics"]]
        for start in range(0, len(entries), _MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=entries[start : start + _MAX_METRICS_PER_BATCH])
    elif kind == "tags":
        tags = [RunTag(k, str(v)) for k, v in op["tags"].items()]
        for start in range(0, len(tags), _MAX_TAGS_PER_BATCH):
            client.log_batch(run_id, tags=tags[start : start + _MAX_TAGS_PER_BATCH])
    elif kind == "report":
        client.log_dict(run_id, op["report"], op.get("artifact_file", schema.REPORT_ARTIFACT))
    elif kind == "terminate":
        client.set_terminated(run_id, status=op["status"], end_time=op.get("end_time_ms"))
    else:
        raise ValueError(f"unknown spooled operation {kind!r}")


class RunRecorder:
    """Writes green metrics, tags and ``green/report.json`` into one MLflow run, asynchronously.

    Args:
        client: The client of the tracking server holding the run.
        run_id: The run to write into.
        spool_dir: Where the run's spool lives (default :func:`~mlflow_green.record.spool.default_spool_dir`).
    """

    def __init__(self, client: MlflowClient, run_id: str, *, spool_dir: str | os.PathLike[str] | None = None) -> None:
        self.client = client
        self.run_id = run_id
        self.failures: list[str] = []
        self._last_timestamp_ms = 0
        self._cond = threading.Condition()
        self._queue: list[dict[str, Any]] = []
        self._closing = False
        self._thread: threading.Thread | None = None
        self.spool: RunSpool | None = None
        try:
            self.spool = RunSpool.create(spool_dir or default_spool_dir(), _tracking_uri(client), run_id)
            self._queue.extend(self.spool.pending())  # left by an earlier process: replay first
        except OSError as exc:  # no writable cache dir: send without a spool
            logger.warning("mlflow-green: no spool for run %s (%s); writes are not crash-safe", run_id, exc)
        self._last_seq = max((op["seq"] for op in self._queue), default=0)

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
            rows.append([key, float(value), timestamp_ms, int(step)])
        if not rows:
            return True
        self._submit({"op": "metrics", "metrics": rows})
        return self.flush() if wait else True

    def log_tags(self, tags: Mapping[str, str]) -> bool:
        """Queue run tags."""
        if tags:
            self._submit({"op": "tags", "tags": {k: str(v) for k, v in tags.items()}})
        return True

    def log_report(self, report: Mapping[str, Any]) -> bool:
        """Queue ``green/report.json``."""
        self._submit({"op": "report", "report": dict(report), "artifact_file": schema.REPORT_ARTIFACT})
        return True

    def terminate(self, status: str) -> None:
        """Queue the end of the run (used when MLflow could not be told directly)."""
        self._submit({"op": "terminate", "status": status, "end_time_ms": int(time.time() * 1000)})

    # -- draining ----------------------------------------------------------------------------
    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued write was accepted; False if some are still pending."""
        deadline = time.monotonic() + (_flush_timeout_s() if timeout_s is None else timeout_s)
        with self._cond:
            while self._queue:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout_s: float | None = None) -> bool:
        """Flush (bounded), then stop the writer. Unsent writes stay spooled for ``mlflow-green sync``."""
        done = self.flush(timeout_s)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            left = len(self._queue)
        if done and self.spool is not None:
            self.spool.remove()
        elif left:
            where = self.spool.path if self.spool is not None else "memory (no spool)"
            logger.warning(
                "mlflow-green: %d write(s) to run %s could not be sent yet; they are kept in %s. "
                "Run `mlflow-green sync` when the tracking server is reachable.",
                left, self.run_id, where,
            )
        return done

    @property
    def pending(self) -> int:
        """Writes not yet accepted by the server."""
        with self._cond:
            return len(self._queue)

    # -- internals ---------------------------------------------------------------------------
    def _submit(self, op: dict[str, Any]) -> None:
        try:
            seq = self.spool.append(op) if self.spool is not None else self._last_seq + 1
        except (OSError, ValueError) as exc:
            logger.warning("mlflow-green: could not spool a write for run %s: %s", self.run_id, exc)
            seq = self._last_seq + 1
        self._last_seq = seq
        with self._cond:
            self._queue.append({**op, "seq": seq})
            self._closing = False
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mlflow-green-writer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        backoff_s = BACKOFF_START_S
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait(1.0)
                if not self._queue:
                    return
                op = self._queue[0]
            try:
                if self.spool is not None:
                    self.spool.sync_to_disk()
                apply_op(self.client, self.run_id, op)
            except Exception as exc:  # the server is down or failing: retry, in order, with backoff
                message = f"{type(exc).__name__}: {exc}"
                if not self.failures or self.failures[-1] != message:
                    logger.warning("mlflow-green: writing to run %s failed (%s); retrying in %.0f s", self.run_id, message, backoff_s)
                self.failures.append(message)
                with self._cond:
                    if self._closing:
                        return
                    self._cond.wait(backoff_s)
                backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
                continue
            backoff_s = BACKOFF_START_S
            if self.spool is not None:
                try:
                    self.spool.mark_done(op["seq"])
                except OSError:
                    pass
            with self._cond:
                if self._queue and self._queue[0] is op:
                    self._queue.pop(0)
                self._cond.notify_all()


def replay(spool: RunSpool, client: MlflowClient | None = None) -> tuple[int, int]:
    """Send a spool's pending writes in order; returns (sent, left). Deletes it when all are sent."""
    from mlflow import MlflowClient

    client = client or MlflowClient(spool.tracking_uri or None)
    pending = spool.pending()
    for index, op in enumerate(pending):
        try:
            apply_op(client, spool.run_id, op)
        except Exception as exc:
            logger.warning("mlflow-green: replaying run %s stopped at write %d: %s", spool.run_id, op["seq"], exc)
            return index, len(pending) - index
        spool.mark_done(op["seq"])
    spool.remove()
    return len(pending), 0


def _tracking_uri(client: Any) -> str:
    uri = getattr(client, "tracking_uri", None) or getattr(client, "_tracking_client", None)
    if isinstance(uri, str):
        return uri
    try:
        import mlflow

        return mlflow.get_tracking_uri()
    except Exception:
        return ""


def _flush_timeout_s() -> float:
    try:
        return float(os.environ.get(ENV_FLUSH_TIMEOUT_S, DEFAULT_FLUSH_TIMEOUT_S))
    except ValueError:
        return DEFAULT_FLUSH_TIMEOUT_S


__all__ = ["RunRecorder", "apply_op", "replay"]
