"""The writer thread's loop: send the queue in order, retry what failed for now, set aside what was refused.

A transient failure (connection, timeout, 5xx, 429) is retried after a pause of
``retry_start_s`` doubling to ``retry_max_s``; a write refused for good is set aside in
``rejected/`` with MLflow's message and the next ones go on; once the run's creation was refused,
every later write is set aside with that reason. :class:`SendLoop` is the sending half of
:class:`~mlflow_green.record.writer.BackgroundWriter`, which owns the queue it reads.

Example::

    writer = BackgroundWriter(MlflowClient(), run_id)   # a SendLoop: its thread runs SendLoop._run
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any

from mlflow_green.record.failures import describe, is_transient
from mlflow_green.record.keeper import SpoolKeeper
from mlflow_green.record.live_writers import LIVE, LIVE_LOCK, forget_writer
from mlflow_green.record.messages import WriteCounts
from mlflow_green.record.ops import BATCHABLE, LeadingBatch, Sent, apply_batch, send
from mlflow_green.record.orphans import adopt_orphans
from mlflow_green.record.timeouts import DEFAULT_SEND_INTERVAL_S, RunTimeouts

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

logger = logging.getLogger(__name__)

SEND_INTERVAL_S = DEFAULT_SEND_INTERVAL_S
"""The default of ``RunTimeouts.send_interval_s`` (``MLFLOW_GREEN_SEND_INTERVAL_S``): while training,
writes that come within this long of the last send wait for each other and go in one request (a
flush, the end of a fit or a close sends at once). A ``log_batch`` on a sqlite store costs ~11 ms of
CPU a call plus ~1.5 ms per epoch's points: epochs shorter than this share a call."""


class SendLoop:
    """The thread side of a run's writer: sends ``_queue``'s head until the queue is empty and closed."""

    client: MlflowClient
    run_id: str | None
    tracking_uri: str
    timeouts: RunTimeouts
    failures: list[str]
    counts: WriteCounts
    creation_error: str | None
    created_run: Run | None
    keeper: SpoolKeeper
    _cond: threading.Condition
    _queue: deque[dict[str, Any]]
    _leading: LeadingBatch  # how much of the queue one log_batch carries, kept up to date
    _closed: bool
    _stopped: bool
    _adopted: bool
    _flushers: int  # callers waiting for the queue to empty: nothing gathers then
    _sent_at_s: float = -math.inf  # time.monotonic() of the last send
    _gathering: bool = False  # the thread waits in _gather
    sending_since_s: float | None = None  # time.monotonic() when the request in flight was sent (None: none is);
    # written by the writer thread only, read by others as a snapshot (the closing message)

    def _label(self) -> str:
        raise NotImplementedError

    def _take_intake(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        backoff_s = self.timeouts.retry_start_s
        first_try = True
        alone_until_seq = 0  # after a refused batch, its entries go one by one (only the bad one is set aside)
        while True:
            with self._cond:
                self._take_intake()
                while not self._queue and not self._closed and not self._stopped:
                    self._cond.wait(5.0)
                    self._take_intake()
                if self._stopped:
                    return
                self._gather(alone_until_seq)
                if self._stopped:  # stopped while gathering: what is not sent stays spooled
                    return
                entries = self._next_entries(alone_until_seq)
            if not entries:
                self._finish()
                return
            entry = entries[0]
            self.keeper.sync_to_disk()
            error = self._creation_failed_reason(entry)
            if error is None:
                self.sending_since_s = time.monotonic()
                try:
                    if len(entries) > 1:
                        apply_batch(self.client, self.run_id or "", entries)
                        sent = Sent(self.run_id or "")
                    else:
                        sent = send(self.client, entry, self.run_id, first_try=first_try and entry["op"] == "create")
                except Exception as exc:
                    self.sending_since_s = None
                    if entry["op"] == "create":
                        first_try = False
                    if is_transient(exc):
                        self._transient(exc, backoff_s)
                        with self._cond:
                            self._cond.wait_for(lambda: self._stopped, timeout=backoff_s)
                        backoff_s = min(backoff_s * 2, self.timeouts.retry_max_s)
                        continue
                    if len(entries) > 1:  # which one was refused? send them one by one
                        alone_until_seq = entries[-1]["seq"]
                        continue
                    error = describe(exc)
                else:
                    self.sending_since_s = None
                    backoff_s = self.timeouts.retry_start_s
                    self._sent_at_s = time.monotonic()
                    self.created_run = sent.run if sent.run is not None else self.created_run
                    self._done(entries, sent.run_id)
                    continue
            self._set_aside(entry, error)

    def _gather(self, alone_until_seq: int) -> None:
        """Let writes gather until ``timeouts.send_interval_s`` after the last send (under the lock).

        Only while the head is a write that one batch carries along (and not one of a refused batch's,
        which are sent one by one at once), the whole queue fits in one request (MLflow's limits:
        1 000 metrics, 100 tags), nobody waits for the queue to empty (a flush, the end of a fit, a
        close, the interpreter's exit) and the writer is not stopped: the points of short
        epochs then reach MLflow together, at most one request every interval, each
        epoch's points within that long of its end (they are in the spool within milliseconds).
        """
        while (self._queue and not self._closed and not self._stopped and not self._flushers
               and self.run_id is not None and self._queue[0]["op"] in BATCHABLE
               and self._queue[0]["seq"] > alone_until_seq  # a refused batch's writes go one after another
               and self._one_request_holds_all()):  # more than one request's worth: send now
            wait_s = self._sent_at_s + self.timeouts.send_interval_s - time.monotonic()
            if wait_s <= 0:
                return
            self._gathering = True  # a write that can wait does not wake this thread
            try:
                self._cond.wait(wait_s)
            finally:
                self._gathering = False
            self._take_intake()

    def _one_request_holds_all(self) -> bool:
        """True while one ``log_batch`` can carry the whole queue (under the lock)."""
        return self._leading.size(self._queue) == len(self._queue)

    def _next_entries(self, alone_until_seq: int) -> list[dict[str, Any]]:
        """The queue's head, with the writes after it that one ``log_batch`` can carry along (under the lock)."""
        if not self._queue:
            return []
        head = self._queue[0]
        if self.run_id is None or head["seq"] <= alone_until_seq or head["op"] not in BATCHABLE:
            return [head]
        return list(islice(self._queue, self._leading.size(self._queue)))

    def _creation_failed_reason(self, entry: Mapping[str, Any]) -> str | None:
        if self.creation_error is not None and entry["op"] != "create":
            return f"the run could not be created: {self.creation_error}"
        return None

    def _transient(self, exc: BaseException, backoff_s: float) -> None:
        message = describe(exc)
        if not self.failures or self.failures[-1] != message:
            logger.warning("mlflow-green: writing to %s failed (%s); retrying in %g s", self._label(), message, backoff_s)
        self.failures.append(message)

    def _done(self, entries: list[dict[str, Any]], run_id: str) -> None:
        entry = entries[0]
        if entry["op"] == "create":
            with LIVE_LOCK:  # never taken while holding self._cond (open() takes them in this order)
                LIVE.setdefault((self.tracking_uri, run_id), self)
        with self._cond:
            if entry["op"] == "create":
                self.run_id = run_id
            else:
                self.counts.sent += len(entries)
        self._progress(entries, run_id if entry["op"] == "create" else None)
        if not self._adopted:  # the server answers: send what earlier processes left for it
            self._adopted = True
            adopt_orphans(self.keeper.folder, self.tracking_uri, self.client, exclude=self.keeper.path)

    def _set_aside(self, entry: dict[str, Any], reason: str) -> None:
        if entry["op"] == "create" or self.creation_error is None:  # the writes after a refused creation: said at close
            logger.warning("mlflow-green: the tracking server refused a write (%s) to %s: %s", entry["op"], self._label(), reason)
        with self._cond:
            if entry["op"] == "create":
                self.creation_error = reason
            else:
                self.counts.rejected += 1
                self.counts.reasons.append(reason)
        kept = self.keeper.reject(entry, reason)
        if kept is not None:
            self.counts.rejected_file = kept
        elif entry["op"] != "create":
            self.counts.rejected_lost += 1
        self._progress([entry])

    def _progress(self, entries: list[dict[str, Any]], run_id: str | None = None) -> None:
        with self._cond:
            self.keeper.done([entry["seq"] for entry in entries], run_id)
            for entry in entries:
                if self._queue and self._queue[0] is entry:
                    self._queue.popleft()
            self._cond.notify_all()

    def _finish(self) -> None:
        """Everything was handled and the writer was closed: delete the spool file."""
        with self._cond:
            problem = self.keeper.remove()
        if problem:
            self.counts.remove_problem = problem
        forget_writer(self)
