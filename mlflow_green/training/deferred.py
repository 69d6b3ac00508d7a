"""Work the training thread hands over, done in order by a background thread: an epoch's accounting.

An epoch's end must cost the training thread little (≤ 0.2 % of the epoch, DESIGN.md §6). It
takes its reading and works out now only what must be known now (whether a budget stops the
training, the figures for the progress bar); the rest — the split into phases, the running totals,
the projection, the metrics and their write — is handed to a :class:`DeferredWork`, whose thread
does it in the order handed over, while the training thread is back in the framework's compiled
step. Whatever reads what that work produces (the end of the fit, a checkpoint, a copy of the
session) calls :meth:`DeferredWork.settle` first, which finishes the work still queued on the
calling thread: a reader never sees an epoch half accounted, and nothing is lost if the thread has
not run yet.

Example:
    >>> work = DeferredWork()
    >>> done = []
    >>> work.submit(lambda: done.append("epoch 0"))
    >>> work.settle()
    >>> done
    ['epoch 0']
    >>> work.close()
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from mlflow_green.measure.procfs import OWN_PID, own_pid

logger = logging.getLogger(__name__)

IDLE_EXIT_S = 30.0
"""The thread ends after this long without work (:meth:`DeferredWork.close` ends it at once)."""

BOUNDARY_DELAY_S = 0.02
"""Woken, the thread waits this long before it works: the training thread leaves the epoch's boundary
(the framework's bookkeeping, the next epoch's start, the first steps) without waiting for the GIL,
and the work is done while the framework's compiled steps have released it. What is handed over
meanwhile (an epoch's end right after its validation, the next epoch's start) is done on the same
wake-up."""

COALESCE_S = 2.0
"""The thread works at most this often: jobs handed over within this long of its last work wait and
are done together (short epochs are accounted a few at a time). Each wake-up of a thread that has sat
idle while the framework ran costs more than the work it does (its code and data are no longer in
the processor's caches): on the digits zoo's ~300 ms TensorFlow epochs the thread's CPU per epoch is
0.42 ms at 0.5 s, 0.16 ms at 2 s (``benchmarks/callback_overhead_keras.py``). A :meth:`DeferredWork.settle`
(the fit's end, a checkpoint, a copy) does the waiting jobs at once. An epoch at least this long is
accounted and spooled :data:`BOUNDARY_DELAY_S` after its end; a shorter one at most this long after:
what a training killed with SIGKILL can lose is its last two seconds, however short its epochs."""

AFTER_EVERY_JOBS = 32
"""Within one run of jobs, :attr:`DeferredWork.after` is called at least this often (and as the run ends)."""


class DeferredWork:
    """Jobs done in order by one background thread, or by whoever calls :meth:`settle` first.

    A job that raises is logged and dropped (measurement never breaks training). Thread-safe; a
    copy (pickle, ``copy.deepcopy``) is a new, empty queue — settle before copying. After a fork,
    the child starts over with its own locks and thread.

    Handing a job over costs a deque append, and a wake-up token only when none is waiting to be
    taken already: jobs are only taken from the deque under one lock, by the thread or by
    :meth:`settle`, so they run in order.
    """

    def __init__(self, name: str = "mlflow-green-epochs") -> None:
        self.name = name
        self.after: Callable[[], object] | None = None  # called as each run of jobs ends (on the thread that did them)
        self._reset()

    def _reset(self) -> None:
        self._pid = own_pid()
        self._jobs: deque[Callable[[], object]] = deque()
        self._running = threading.RLock()  # held while jobs run: a settle waits for the job in progress
        self._state = threading.Lock()  # the thread's start and end
        self._tokens: queue.SimpleQueue[bool] = queue.SimpleQueue()  # wakes the thread (False: end)
        self._thread: threading.Thread | None = None
        self._draining: int | None = None  # the thread doing jobs now
        self._woken = False  # a wake-up token is in the queue, not yet taken by the thread

    def start(self) -> None:
        """Start the thread now (at a fit's start), so that no epoch pays for starting it."""
        self._after_fork()
        with self._state:
            self._start_thread()

    def submit(self, job: Callable[[], object]) -> None:
        """Queue ``job``; the thread does it after every job queued before it."""
        if self._pid != OWN_PID[0]:  # own_pid() without the call: an epoch's end hands its work over here
            self._after_fork()
        self._jobs.append(job)
        if self._thread is None:
            with self._state:
                self._start_thread()
        if not self._woken:  # else the thread, once it takes the token, does this job too
            self._woken = True
            self._tokens.put(True)

    def in_job(self) -> bool:
        """True when called from inside a job (on the thread, or on a thread settling): what the job
        hands on may be done at once, it is off the training thread already or due now."""
        return self._draining == threading.get_ident()

    def settle(self) -> None:
        """Finish every queued job now, on this thread (waits for the one in progress)."""
        self._after_fork()
        if self._draining == threading.get_ident():  # called from a job: the jobs after it come after it
            return
        if not self._jobs and not self._running_elsewhere():
            return
        with self._running:
            self._drain()

    def close(self) -> None:
        """Finish the queued jobs and end the thread (a later :meth:`submit` starts another)."""
        self.settle()
        with self._state:
            if self._thread is not None:
                self._tokens.put(False)
                self._thread = None

    @property
    def pending(self) -> int:
        """Jobs queued and not started."""
        return len(self._jobs)

    # -- internals ---------------------------------------------------------------------------
    def _running_elsewhere(self) -> bool:
        """True while the thread is in a job (its result is not visible yet)."""
        if self._running.acquire(blocking=False):
            self._running.release()
            return False
        return True

    def _after_fork(self) -> None:
        if self._pid != own_pid():  # a forked child: the parent's thread and lock holders are not here
            jobs = self._jobs
            self._reset()
            self._jobs.extend(jobs)

    def _start_thread(self) -> None:
        """Start the thread if none runs (under ``_state``)."""
        if self._thread is None:
            self._tokens = queue.SimpleQueue()  # a thread told to end may not have read its token yet
            self._woken = False
            self._thread = threading.Thread(target=self._loop, args=(self._tokens,), name=self.name, daemon=True)
            self._thread.start()

    def _drain(self) -> None:
        """Do the queued jobs in order, then :attr:`after` (also every :data:`AFTER_EVERY_JOBS` jobs: a long run of short
        epochs' jobs does not hold back what it gathered) (under ``_running``)."""
        self._draining = threading.get_ident()
        done = 0
        try:
            while True:
                try:
                    job = self._jobs.popleft()
                except IndexError:
                    break
                try:
                    job()
                except Exception as exc:  # measurement never crashes training
                    logger.warning("mlflow-green: could not account for an epoch: %r", exc)
                done += 1
                if done % AFTER_EVERY_JOBS == 0:
                    self._after()
        finally:
            try:
                self._after()
            finally:
                self._draining = None

    def _after(self) -> None:
        try:
            if self.after is not None:
                self.after()
        except Exception as exc:
            logger.warning("mlflow-green: could not spool the epochs' metrics: %r", exc)

    def _loop(self, tokens: queue.SimpleQueue[bool]) -> None:
        last_work_s = -COALESCE_S
        while True:
            try:
                token = tokens.get(timeout=IDLE_EXIT_S)
                if not token:
                    return  # closed
                # jobs handed over meanwhile ride on this wake-up: the boundary's, and those until the spacing is up
                time.sleep(max(BOUNDARY_DELAY_S, last_work_s + COALESCE_S - time.monotonic()))
                if tokens is self._tokens:
                    self._woken = False  # before the jobs are taken: a job handed over after this wakes us again
            except queue.Empty:
                with self._state:
                    if not self._jobs and self._tokens is tokens:
                        self._thread = None  # under the lock: a later submit starts another
                        return
                continue
            with self._running:
                self._drain()
            last_work_s = time.monotonic()

    def __reduce__(self) -> tuple[object, ...]:
        return (DeferredWork, (self.name,))


__all__ = ["AFTER_EVERY_JOBS", "BOUNDARY_DELAY_S", "COALESCE_S", "IDLE_EXIT_S", "DeferredWork"]
