"""Which MLflow run a measurement goes into, bound without ever blocking training for long.

An explicit run, else the active run, else a new run that mlflow-green creates. The creation
goes through the run's background writer (:class:`~mlflow_green.record.recorder.RunRecorder`):
training waits for it at most the start timeout (``MLFLOW_GREEN_START_TIMEOUT_S``, 2 s). If
MLflow has not answered by then, training starts anyway and the creation is spooled — with the
experiment, name, tags, start time and parent — and made as soon as the server answers (or by
``mlflow-green sync``), exactly once: the run carries a unique token that a retry looks up first.

A run created in time becomes MLflow's active run, as with ``mlflow.start_run``; its end is sent
by the writer too, so that the end of a fit waits at most the end timeout (30 s).

Example::

    handle = resolve_run()          # the active run, or a new one we own
    handle.recorder.log_metrics({"green/energy_kwh": 0.1}, step=0)
    handle.finish("FINISHED")       # ends it if we started it; waits at most the end timeout
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from mlflow_green.record.ops import RunSpec
from mlflow_green.record.recorder import RunRecorder
from mlflow_green.record.system_metrics import start_monitor, stop_monitor
from mlflow_green.record.timeouts import RunTimeouts
from mlflow_green.record.users_run import named_run_usable, users_run_id

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

_pending = threading.local()
"""This thread's stack of runs mlflow-green started that MLflow has not created yet."""


class RunHandle:
    """A run to log into, its writer, and whether we started it (and so must end it).

    Args:
        client: Client of the tracking server holding the run (None: made on first use, for
            ``tracking_uri`` — making one can block on a database, so training never does it).
        run_id: The run; None while the run we started is not created yet (see :attr:`pending`).
        owned: True if mlflow-green started the run and must end it.
        fluent: True if the run is MLflow's active run because we made it so.
        recorder: Its writer (opened on first use when not given).

    Example::

        handle = RunHandle(MlflowClient(), "0a1b2c")   # an existing run: never ended by us
        handle.recorder.log_tags({"green.version": "0.1"})
        handle.finish()
    """

    def __init__(
        self,
        client: MlflowClient | None = None,
        run_id: str | None = None,
        owned: bool = False,
        fluent: bool = False,
        *,
        recorder: RunRecorder | None = None,
        timeouts: RunTimeouts | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        self._client = client
        self.tracking_uri = tracking_uri
        self._run_id = run_id
        self.owned = owned
        self.fluent = fluent
        self.timeouts = timeouts
        self._recorder = recorder
        self._finished = False
        self._system_metrics: Any = None  # MLflow's monitor, for a run we start while system metrics logging is on

    @property
    def client(self) -> MlflowClient:
        """The client of the run's tracking server."""
        if self._client is None:
            self._client = self.recorder.client
        return self._client

    @property
    def run_id(self) -> str | None:
        """The run's id (None until MLflow created the run we started)."""
        if self._run_id is None and self._recorder is not None:
            self._run_id = self._recorder.run_id
        return self._run_id

    @property
    def pending(self) -> bool:
        """True while MLflow has not created the run (its creation is spooled)."""
        return self.run_id is None

    @property
    def recorder(self) -> RunRecorder:
        """The run's background writer."""
        if self._recorder is None:
            self._recorder = RunRecorder.open(self._client, self._run_id, tracking_uri=self.tracking_uri, timeouts=self.timeouts)
        return self._recorder

    def finish(self, status: str = "FINISHED", timeout_s: float | None = None) -> bool:
        """The end of a fit: queue the run's end if we own it, then flush at most the end timeout.

        Never raises. Returns True if everything reached the server; what did not stays spooled.
        """
        if self._finished:
            return True
        self._finished = True
        try:
            recorder = self.recorder
            if self.owned:
                self.owned = False
                monitor, self._system_metrics = self._system_metrics, None  # its last samples first, in the end budget
                timeout_s = stop_monitor(monitor, timeout_s, recorder.timeouts.end_s, failing=bool(recorder.failures))
                recorder.terminate(status)
                _deactivate(self)
            return recorder.close(timeout_s)
        except Exception as exc:  # measurement never crashes training
            logger.warning("mlflow-green: could not finish writing to run %s: %s", self.run_id, exc)
            return False

    def end(self, status: str = "FINISHED", recorder: Any = None) -> None:
        """Same as :meth:`finish` (kept for callers of 0.1)."""
        self.finish(status)

    def share(self) -> RunHandle:
        """Another handle on the same run and writer, which never ends the run (a nested measurement)."""
        return RunHandle(self._client, self._run_id, recorder=self.recorder.acquire(), timeouts=self.timeouts)


def resolve_run(
    *,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    run_name: str | None = None,
    experiment_id: str | None = None,
    nested: bool = False,
    tags: dict[str, str] | None = None,
    timeouts: RunTimeouts | None = None,
    parent: RunHandle | None = None,
    activate: bool = True,
) -> RunHandle:
    """The run to log into: ``run_id`` if given, else the active run, else a new run.

    Waits at most ``timeouts.start_s`` for MLflow. Configuration errors raise; MLflow's never do.

    Args:
        run_id: An existing run (e.g. the one of Lightning's ``MLFlowLogger``).
        tracking_uri: Tracking URI of ``run_id``'s server (default: the current one).
        run_name: Name of a run we start.
        experiment_id: Experiment of a run we start (default: the active experiment).
        nested: Start a child of the active run instead of logging into it.
        tags: Extra tags of a run we start.
        timeouts: Bounds on waiting (default: ``MLFLOW_GREEN_*`` variables).
        parent: Start a child of this run (ours, created or not yet) whatever the active run.
        activate: Make a run we start MLflow's active run now (else later: :func:`activate_if_none_active`).
    """
    import mlflow

    timeouts = timeouts or RunTimeouts.resolve()
    if run_id is not None:
        return RunHandle(None, run_id, timeouts=timeouts, tracking_uri=tracking_uri or mlflow.get_tracking_uri())
    active = mlflow.active_run()
    environment_run_id = users_run_id() if active is None else None
    parent_run_id = parent_token = None
    if parent is not None:
        spec = getattr(parent.recorder, "spec", None)
        parent_run_id = parent.run_id
        parent_token = spec.token if parent_run_id is None and spec is not None else None
    elif active is not None:
        if not nested:
            return RunHandle(None, active.info.run_id, timeouts=timeouts, tracking_uri=mlflow.get_tracking_uri())
        parent_run_id = active.info.run_id
    elif _pending_stack():
        outer = _pending_stack()[-1]
        if not nested:
            return outer.share()
        parent_run_id, parent_token = outer.run_id, None if outer.run_id else outer.recorder.spec.token  # type: ignore[union-attr]
    elif environment_run_id is not None and named_run_usable(environment_run_id, timeouts):  # `mlflow run`'s: the user's
        if not nested:
            return RunHandle(None, environment_run_id, timeouts=timeouts, tracking_uri=mlflow.get_tracking_uri())
        parent_run_id = environment_run_id
    spec = _spec(run_name, experiment_id, tags, parent_run_id, parent_token)
    recorder = RunRecorder.open(None, spec=spec, tracking_uri=mlflow.get_tracking_uri(), owned=True, timeouts=timeouts)
    handle = RunHandle(None, None, owned=True, recorder=recorder, timeouts=timeouts)
    start_s = timeouts.start_for(recorder.tracking_uri)
    try:
        created = recorder.wait_created(start_s)
    except BaseException:  # interrupted while it waits (Ctrl-C): the run ends KILLED once created, not left RUNNING
        handle.finish("KILLED", timeout_s=min(timeouts.end_s, 5.0))  # an interrupt: at most a few seconds more
        raise
    if created is not None:
        handle._system_metrics = start_monitor(created, recorder.tracking_uri)  # as mlflow.start_run's would
        if activate:
            _activate(handle)
    elif recorder.creation_error is not None:  # refused for good (a deleted experiment): said once, by the writer
        logger.warning("mlflow-green: training goes on, measured, but nothing reaches MLflow: the run could not be created "
                       "(%s); its writes are kept aside in the spool's rejected/ folder", recorder.creation_error)
    else:
        _pending_stack().append(handle)
        logger.warning(
            "mlflow-green: the tracking server %s did not create the run within %g s (%s); training goes on, "
            "measured, and the run is created as soon as the server answers (or by `mlflow-green sync`)",
            recorder.tracking_uri, start_s, recorder.failures[-1] if recorder.failures else "no answer yet",
        )
    return handle


def _spec(run_name: str | None, experiment_id: str | None, tags: dict[str, str] | None,
          parent_run_id: str | None, parent_token: str | None) -> RunSpec:
    """Everything ``mlflow.start_run`` would send, found locally (no server call)."""
    from mlflow.tracking.context import registry as context_registry

    experiment_name = None
    if experiment_id is None:
        experiment_id, experiment_name = _local_experiment()
    user_tags = dict(tags or {})
    if run_name:
        user_tags["mlflow.runName"] = run_name
    if parent_run_id:
        user_tags["mlflow.parentRunId"] = parent_run_id
    try:
        resolved = {k: str(v) for k, v in context_registry.resolve_tags(user_tags).items()}
    except Exception:  # a broken context provider never stops training
        resolved = user_tags
    return RunSpec(
        token=uuid.uuid4().hex, experiment_id=experiment_id, experiment_name=experiment_name, run_name=run_name,
        tags=resolved, start_time_ms=int(time.time() * 1000), parent_run_id=parent_run_id, parent_token=parent_token,
    )


def _local_experiment() -> tuple[str | None, str | None]:
    """(experiment id, or else name) as ``mlflow.start_run`` would choose, without asking the server."""
    from mlflow.tracking import fluent

    active = getattr(fluent, "_active_experiment_id", None)
    if active:
        return str(active), None
    if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        return None, os.environ["MLFLOW_EXPERIMENT_NAME"]
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"], None
    try:
        from mlflow.tracking.default_experiment import registry

        return str(registry.get_experiment_id()), None
    except Exception:
        return "0", None


def _pending_stack() -> list[RunHandle]:
    stack = getattr(_pending, "stack", None)
    if stack is None:
        stack = _pending.stack = []
    stack[:] = [handle for handle in stack if handle.pending and not handle._finished]
    return stack


def _activate(handle: RunHandle) -> None:
    """Make the run we created MLflow's active run, as ``mlflow.start_run`` does (no server call)."""
    run = handle.recorder.created_run
    if run is None:
        return
    try:
        from mlflow.tracking import fluent

        stack, active = fluent._active_run_stack.get(), fluent.ActiveRun(run)
        stack.append(active)
        handle.fluent, handle._activated = True, (stack, active)
    except Exception as exc:  # another MLflow version: the run is still written, just not active
        logger.debug("mlflow-green: could not make run %s active: %s", handle.run_id, exc)


def activate_if_none_active(handle: RunHandle) -> None:
    """Make ``handle`` (a run we started, created by now) MLflow's active run if no run is active: a fit's run, at
    its first epoch — the user's own callbacks that start a run as the fit begins (``mlflow.start_run()`` in their
    ``on_train_begin``) have done so by then, and would fail on a run of ours already active."""
    import mlflow

    if handle.owned and not handle.fluent and handle.recorder.created_run is not None and mlflow.active_run() is None:
        _activate(handle)


def leave_active(handle: RunHandle | None) -> None:
    """Our run (if ``handle`` is one) is no longer MLflow's active run, though it has not ended yet: a Keras fit's
    end waits for the callbacks listed after ours, whose ``on_train_end`` may start a run of their own."""
    if handle is not None and handle.owned:
        _deactivate(handle)


def _deactivate(handle: RunHandle) -> None:
    """Pop our run from MLflow's active runs (its end is sent by the writer, within the end timeout); once only."""
    stack = _pending_stack()
    if handle in stack:
        stack.remove(handle)
    if not handle.fluent:
        return
    try:
        from mlflow.tracking import fluent

        # the very entry we pushed, from the stack of the thread that activated it (the thread ending it may be
        # another: a fit that failed in Keras's own code is ended by the thread watching it)
        runs, active = handle.__dict__.pop("_activated", ([], None))
        for index in range(len(runs) - 1, -1, -1):  # by identity: a run pushed meanwhile by another thread stays
            if runs[index] is active:
                del runs[index]
                fluent._last_active_run_id.set(handle.run_id)
                break
    except Exception as exc:
        logger.debug("mlflow-green: could not pop run %s from the active runs: %s", handle.run_id, exc)


__all__ = ["RunHandle", "leave_active", "resolve_run"]
