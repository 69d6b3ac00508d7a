"""Gate tag writes off the request path: a background writer, and a registry that holds its writes back.

Each sqlite write costs 10-30 ms on a small machine; the gate decides on reads only and queues
its tag writes (the verdict on the version, the alias's holder memory) until MLflow has applied
the request, so the two never wait on each other's write lock (example: :class:`TagWriter`).
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from mlflow_green.gates.registry import Registry

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel

logger = logging.getLogger("mlflow_green.server.gate_enforcement")


class TagWriter:
    """Runs tag writes on one background thread, in submission order, off the request path.

    Example:
        >>> writer = TagWriter()
        >>> done = []
        >>> writer.submit(lambda: done.append("tags"))
        >>> writer.flush(timeout_s=5.0), done
        (True, ['tags'])
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], None]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, write: Callable[[], None]) -> None:
        """Queue a write (the thread starts on first use, so after any worker fork).

        The write runs in a copy of the caller's context, so request-scoped state the stores
        read from context variables (the workspace of ``mlflow server --enable-workspaces``)
        is the request's.
        """
        context = contextvars.copy_context()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mlflow-green-gate-tags", daemon=True)
                self._thread.start()
        self._queue.put(lambda: context.run(write))

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every write queued so far is done; False on timeout."""
        if self._thread is None:
            return True
        done = threading.Event()
        self.submit(done.set)
        return done.wait(timeout_s)

    def _run(self) -> None:
        while True:
            write = self._queue.get()
            try:
                write()
            except Exception:  # a failed write is logged; the decision was already made
                logger.exception("mlflow-green: could not write gate tags")
            finally:
                self._queue.task_done()


class DeferredTagRegistry:
    """A :class:`~mlflow_green.gates.registry.Registry` that holds its tag writes back.

    The writes are kept in :attr:`pending` until :meth:`GateEnforcer.after_request` hands them
    to the :class:`TagWriter` — after MLflow's handler has applied (and committed) the alias, so
    the two never wait on each other's sqlite write lock.

    Args:
        registry: Where to read and, later, write.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.pending: list[Callable[[], None]] = []

    def model_version(self, name: str, version: str) -> ModelVersion:
        return self.registry.model_version(name, version)

    def registered_model(self, name: str) -> RegisteredModel:
        return self.registry.registered_model(name)

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        return self.registry.version_by_alias(name, alias)

    def run(self, run_id: str) -> Run:
        return self.registry.run(run_id)

    def read_artifact(self, run: Run, path: str) -> bytes | None:
        return self.registry.read_artifact(run, path)

    def latest_in_stage(self, name: str, stage: str) -> ModelVersion | None:
        return self.registry.latest_in_stage(name, stage)

    def set_version_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        tags = dict(tags)
        self.pending.append(lambda: self.registry.set_version_tags(name, version, tags))

    def set_model_tags(self, name: str, tags: Mapping[str, str]) -> None:
        tags = dict(tags)
        self.pending.append(lambda: self.registry.set_model_tags(name, tags))
