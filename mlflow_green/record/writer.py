"""The background writer of one run: a queue sent in order by one thread, retried, refused writes set aside.

:class:`~mlflow_green.record.recorder.RunRecorder` is its public face (``log_metrics``, ``close``...).
Here: the entries (see :mod:`mlflow_green.record.ops`) are kept by a
:class:`~mlflow_green.record.keeper.SpoolKeeper` before they are queued; one daemon thread sends
them in order. A transient failure (connection, timeout, 5xx, 429) is retried after a pause of
1 s doubling to ``MLFLOW_GREEN_RETRY_MAX_S`` (60 s), while training goes on; a write refused for
good is set aside in ``rejected/`` with MLflow's message and the next ones go on; when the run's
creation is refused, every write after it is set aside with that reason. Waiting on the thread
is always bounded by the caller's timeout; the thread itself may wait on MLflow as long as MLflow
does, in the background.

One writer per run and process (:data:`LIVE`, :mod:`~mlflow_green.record.live_writers`): a later
fit of the same run in the same process shares it, so that its writes stay in order. The thread's
loop (send, retry, set aside) is :class:`~mlflow_green.record.send_loop.SendLoop`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_green.record.keeper import SpoolKeeper
from mlflow_green.record.live_writers import LIVE, LIVE_LOCK, WRITERS, forget_writer, tracking_uri_of
from mlflow_green.record.messages import WriteCounts
from mlflow_green.record.ops import BATCHABLE, LeadingBatch, RunSpec
from mlflow_green.record.send_loop import SendLoop
from mlflow_green.record.spool import canonical_uri, default_spool_dir
from mlflow_green.record.timeouts import RunTimeouts

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

logger = logging.getLogger(__name__)

class BackgroundWriter(SendLoop):
    """The queue and thread of one run's writes (see the module docstring). Use ``RunRecorder``."""

    _forked = False  # True in a forked child: the parent's writer, inert there (see live_writers)

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
        self.tracking_uri = canonical_uri(tracking_uri or tracking_uri_of(client))
        self.timeouts = timeouts or RunTimeouts.resolve()
        self.failures: list[str] = []
        self.counts = WriteCounts()
        self.creation_error: str | None = None
        self.created_run: Run | None = None
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # the queue: the writer thread and whoever waits on it
        self._handed_over = threading.Condition(lock)  # wakes the spool thread only (see _later)
        self._queue: deque[dict[str, Any]] = deque()
        self._leading = LeadingBatch()
        self._seq = 0
        self._last_timestamp_ms = 0
        self._refs = 1
        self._closed = False
        self._stopped = False
        self._adopted = False
        self._flushers = 0
        self._held: dict[str, Any] | None = None
        self._intake: deque[Callable[[], None]] = deque()
        self._outbox: list[list[Any]] = []  # metrics rows gathered (RunRecorder.gather): one entry, before the next write
        self._taking = False
        self._spool_thread: threading.Thread | None = None
        self._thread: threading.Thread | None = None
        self.keeper = SpoolKeeper(
            Path(spool_dir) if spool_dir is not None else default_spool_dir(),
            header=lambda: {"tracking_uri": self.tracking_uri, "run_id": self.run_id, "owned": self.owned,
                            "token": self.spec.token if self.spec else None},
            label=self.label,
        )
        WRITERS.add(self)
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

    def acquire(self) -> BackgroundWriter:
        """One more user of this writer (each needs its own :meth:`close`)."""
        with self._cond:
            self._refs = max(self._refs, 0) + 1
            self._closed = False
        return self

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
        if self._forked:
            return True
        deadline = time.monotonic() + (self.timeouts.end_s if timeout_s is None else timeout_s)
        with self._cond:
            self._take_intake()
            self._flushers += 1  # the writer thread sends at once (no gathering)
            self._cond.notify_all()
            try:
                while self._queue:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            finally:
                self._flushers -= 1
        return True

    def sending(self) -> bool:
        """True while writes are gathered, or queued and this writer's thread runs to send them (not stopped)."""
        with self._cond:
            return not self._stopped and bool(self._outbox) or bool(self._queue) and self.thread_running

    @property
    def thread_running(self) -> bool:
        """True while this writer's sending thread runs and was not stopped (a stopped thread inside a request exits
        when it returns, sending nothing more)."""
        thread = self._thread
        return not self._stopped and thread is not None and thread.is_alive()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` ran (until the next write starts the writer again)."""
        return self._stopped

    def stop(self) -> None:
        """Stop the background writer now, as if this process ended: what is not sent stays spooled (unlocked).

        ``mlflow-green sync`` (or a later training) sends it. The writer starts again on the next write.
        """
        with self._cond:
            self._take_intake()  # what was handed over is kept in the spool before the writer stops
            self._stopped = True
            self.wake_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=0.5)  # it may be inside one of MLflow's requests: never wait on that
        self.keeper.release()
        forget_writer(self)

    def backlog(self) -> tuple[list[dict[str, Any]], set[int]]:
        """The entries not handled yet, and the ``seq`` of those that are in no spool file (memory only)."""
        with self._cond:
            self._take_intake()
            return list(self._queue), set(self.keeper.unspooled)

    @property
    def pending(self) -> int:
        """Writes not yet handled."""
        with self._cond:
            self._take_intake()
            return len(self._queue)

    # -- internals ---------------------------------------------------------------------------
    def _later(self, work: Callable[[], None]) -> None:
        """Hand ``work`` (making an entry and submitting or holding it) to the spool thread.

        The training thread only appends to a deque and wakes the spool thread, which keeps the
        entry in the spool within milliseconds — it never waits on MLflow, so this holds while the
        sending thread is retrying a server that is down — and queues it for sending. Every other
        write, ``flush``, ``pending``, ``backlog`` and ``stop`` first does what was handed over, so
        writes keep their order.
        """
        if self._forked:
            return
        with self._cond:
            self._intake.append(work)
            self._start_spool_thread()
            self._handed_over.notify()

    def prepare_handover(self) -> None:
        """Start the spool thread now (at a fit's start), so that no epoch pays for starting a thread."""
        with self._cond:
            self._start_spool_thread()

    def _start_spool_thread(self) -> None:
        """Start the spool thread if it is not running (under the lock)."""
        if self._spool_thread is None:
            self._spool_thread = threading.Thread(target=self._keep_handed_over, name="mlflow-green-spool", daemon=True)
            self._spool_thread.start()

    def _keep_handed_over(self) -> None:
        """The spool thread: does the handed-over work as it comes, until this writer is closed or stopped."""
        with self._cond:
            while True:
                if self._intake:
                    self._take_intake()
                elif self._stopped or self._closed:
                    self._spool_thread = None  # under the lock: a later hand-over starts another
                    return
                else:
                    self._handed_over.wait(5.0)

    def wake_all(self) -> None:
        """Wake every thread of this writer and every waiter (under the lock: closed or stopped)."""
        self._cond.notify_all()
        self._handed_over.notify_all()

    def _take_intake(self) -> None:
        """Do the handed-over work, in order, then queue the gathered rows (under the lock; re-entered calls leave it to
        the outer one)."""
        if self._taking:
            return
        self._taking = True
        try:
            while self._intake:
                work = self._intake.popleft()
                try:
                    work()
                except Exception as exc:  # a write must never break the writer
                    logger.warning("mlflow-green: could not queue a write for %s: %r", self.label(), exc)
            if self._outbox:
                rows, self._outbox = self._outbox, []
                self._submit({"op": "metrics", "metrics": rows})
        finally:
            self._taking = False

    def _start_or_notify(self, op: str = "") -> None:
        """Start the writer thread if it is not running, and wake it (under the lock) unless it is
        gathering and ``op`` can wait with the rest (see :meth:`_gather`)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="mlflow-green-writer", daemon=True)
            self._thread.start()
        if not (self._gathering and op in BATCHABLE and self._one_request_holds_all()):
            self._cond.notify_all()

    def _submit(self, entry: dict[str, Any], t_ms: int | None = None) -> None:
        if self._forked:
            return
        with self._cond:
            self._take_intake()
            self._seq += 1
            entry = {"seq": self._seq, "t_ms": int(time.time() * 1000) if t_ms is None else t_ms, **entry}
            held = self._held
            if held is not None and entry["op"] == "metrics" and any(row[3] == held["metrics"][0][3] for row in entry["metrics"]):
                entry["releases"] = held["seq"]  # the held values of that step are sent now
                self._held = None
            self._stopped = False
            self.keeper.keep(entry, backlog=lambda: self._kept_backlog(self._held))  # listed only if a new file is made
            self._queue.append(entry)
            if entry["op"] != "create":
                self.counts.submitted += 1
            self._start_or_notify(entry["op"])

    def _hold(self, entry: dict[str, Any], t_ms: int | None = None) -> None:
        """Spool metrics that are not to be sent yet (a step still open): only a crash makes a replay send them.

        Each hold replaces the previous one; the next metrics entry at the same step releases it.
        """
        if self._forked:
            return
        with self._cond:
            self._take_intake()
            self._seq += 1
            entry = {"seq": self._seq, "t_ms": int(time.time() * 1000) if t_ms is None else t_ms, **entry, "held": True}
            if self._held is not None:
                entry["releases"] = self._held["seq"]
            before = self._held  # a new spool file gets the writes not sent and this hold, each once
            self._held = entry
            self.keeper.keep(entry, backlog=lambda: self._kept_backlog(before))

    def _kept_backlog(self, held: dict[str, Any] | None) -> list[dict[str, Any]]:
        """What a new spool file must hold: the writes not sent yet, and the held step ``held``."""
        backlog = list(self._queue)
        if held is not None:
            backlog.append(held)
        return sorted(backlog, key=lambda entry: entry["seq"])

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


__all__ = ["LIVE", "LIVE_LOCK", "BackgroundWriter", "tracking_uri_of"]
