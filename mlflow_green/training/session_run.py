"""The MLflow run a training session logs into, and every write into it.

This is the session's one seam with MLflow: where the run is chosen (:meth:`SessionRun.bind`), where metrics, tags and
the report are queued (:meth:`~SessionRun.log`, :meth:`~SessionRun.log_tags`, :meth:`~SessionRun.log_report`) and
where everything is flushed and a run we started is ended (:meth:`~SessionRun.close`). Writes go through a
:class:`~mlflow_green.record.recorder.RunRecorder`: queued, sent by a background thread, spooled when the server is
unreachable. Binding waits at most ``timeouts.start_s`` for MLflow and closing at most ``timeouts.end_s`` (see
:mod:`mlflow_green.record.timeouts`); the session starts its meters after binding and stops them before closing, so
that this waiting is never billed as training.

One point per step: the metrics of a step are held until the session moves to another step
(:meth:`~SessionRun.send_pending`), so the end-of-fit totals replace the last epoch's values at its step instead of
adding a second point there. Held values are spooled (not sent) as they are logged — by the writer's spool thread,
within milliseconds, so that the training thread does no file work at an epoch's end — and a training killed before
its next step keeps them (a replay sends them).

Example::

    out = SessionRun(run_name="baseline")
    out.bind()                                  # the active run, or a new one we own
    out.log({"green/energy_kwh": 0.1}, step=0)  # held until step 0 is complete
    out.close("FINISHED")                       # sent (or spooled); our own run is ended
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mlflow_green.record.runs import RunHandle, activate_if_none_active, resolve_run
from mlflow_green.record.signing import SigningKey
from mlflow_green.record.timeouts import RunTimeouts
from mlflow_green.training import outer_calls

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
        self._thread, self._bound_seq = 0, 0  # the thread that bound the run, and when
        self.still_in_call: Callable[[], bool] | None = None  # the adapter's word that its call still runs
        self.in_call = False  # a fit measured into the bound run runs (set by the session, cleared by close)
        self.context: dict[str, Any] | None = None  # MLflow context of the process that pickled us
        self._pending_step: int | None = None
        self._name_warned = False  # run_name given and an existing run bound: said once
        self._pending: dict[str, float] = {}
        self._key_steps: dict[str, int] = {}
        self._last_values: dict[str, float] = {}
        self.signing_key = SigningKey.from_env()  # MLFLOW_GREEN_SIGNING_KEY; a bad key fails here, at construction

    @property
    def run_id(self) -> str | None:
        """Id of the last run bound (None while a run we started waits for MLflow to create it)."""
        handle = next((h for h in (self.run, self._last) if h is not None and h.run_id is not None), None)
        self._run_id = handle.run_id if handle is not None else self._run_id
        return self._run_id

    @property
    def current(self) -> RunHandle | None:
        """The run bound, else the last fit's (closed: an evaluation after it writes there), else None."""
        return self.run or self._last

    @property
    def bound(self) -> bool:
        """True if writes go somewhere."""
        return self.current is not None

    @property
    def owned(self) -> bool:
        """True if the bound run was started by us (so we end it)."""
        return self.run is not None and self.run.owned

    def bind(self, run: RunHandle | None = None, *, activate: bool = True, **resolve: Any) -> bool:
        """Log into ``run``, else resolve one (explicit id, active run, or a new one we own).

        Returns True if the run is a different one from the run bound before (the caller
        starts its totals over). Waits at most the start timeout; never raises for MLflow. ``activate=False``
        (a fit): a run started here becomes MLflow's active run at :meth:`activate`, not now.
        """
        if run is None and self.owned:
            return False  # a fit in progress keeps its run
        previous = self.run_id
        try:
            if run is None:
                outer = None if resolve else self._outer_run()
                run = self._spawned_run(**resolve) or resolve_run(
                    run_name=self.run_name, timeouts=self.timeouts, nested=outer is not None, parent=outer,
                    activate=activate, **resolve)
            run.recorder.prepare_handover()  # opens its writer and its spool thread now, not at an epoch
        except Exception as exc:  # measurement never stops the training
            logger.warning("mlflow-green: no MLflow run to log into (%s); measuring without logging", exc)
            return False
        if self.run is not None and self.run is not run:
            self.run.finish()
        self.run, self._last, self._reopened = run, None, False
        if self.run_name and not run.owned and not self._name_warned:  # the user's run (or a logger's): not renamed
            self._name_warned = True
            logger.warning("mlflow-green: run_name=%r names a run the callback starts; it logs into an existing run "
                           "here (the active run, MLFLOW_RUN_ID's or the logger's), whose name is left as it is", self.run_name)
        outer_calls.enter(self)  # with a fit or an evaluation in progress (until closed)
        current = run.run_id
        changed = previous is not None and (current is None or current != previous)
        if changed or previous is None:
            self._key_steps, self._last_values = {}, {}
        return changed

    def activate(self) -> None:
        """A fit's first epoch begins: its run, if ours, becomes MLflow's active run unless one is (fits in two threads: warned)."""
        outer_calls.warn_if_concurrent(self)
        if self.run is not None:
            activate_if_none_active(self.run)

    def _outer_run(self) -> RunHandle | None:
        """The run of another session measuring a call on this thread now (a fit started from a callback of
        another fit), when this one would log into that run or start a run beside it; this one then gets a
        child run of it (two histories of steps would clash in one run). None: not inside another."""
        import mlflow

        others = outer_calls.outer_calls(exclude=self)
        if not others:
            return None
        active = mlflow.active_run()
        if active is not None:  # the outer one's, or a run of the user's started inside it (logged into, as asked)
            inside = [other.run for other in others if other.run is not None and other.run.run_id == active.info.run_id]
            outer = inside[-1] if inside else None
        else:  # the outer one's run, not active (not created yet, or created late in the background)
            outer = others[-1].run
        if outer is not None:
            logger.info("mlflow-green: a fit or evaluation inside another one's measurement gets a child run of its run")
        return outer

    def _in_call(self) -> bool:
        """True while a fit it measures runs: begun, not closed, and (the adapter's word) not left yet."""
        try:
            return self.in_call and (self.still_in_call is None or self.still_in_call())
        except Exception:
            return self.in_call

    def pending_creation(self) -> dict[str, str | None] | None:
        """While the bound run waits for MLflow to create it: its creation token and experiment, which
        find it once created (a checkpoint written meanwhile holds them instead of its id); else None."""
        handle = self.current
        spec = getattr(handle.recorder, "spec", None) if handle is not None and handle.run_id is None else None
        return None if spec is None else {"token": spec.token, "experiment_id": spec.experiment_id,
                                          "experiment_name": spec.experiment_name}

    # -- writes (queued, never raise) -----------------------------------------------------------
    def _handle(self) -> RunHandle | None:
        """The run to write into; after a fit, a writer is reopened on its run (ended by the next flush/close)."""
        if self.run is None and self._last is not None:
            last = self._last
            self.run = last.share() if last.pending else RunHandle(
                last._client, last.run_id, timeouts=self.timeouts, tracking_uri=last.tracking_uri or last.recorder.tracking_uri)
            self._reopened = True
        return self.run

    def log(self, metrics: Mapping[str, float], step: int, *, hold: bool = True, background: bool = True) -> None:
        """Queue metrics at ``step``; values logged again at the same step replace the held ones.

        ``hold=False`` leaves them pending without spooling them now: the step's next ``log`` (its
        epoch's end) holds them with its own values. ``background=False``: spooled by the calling
        thread (one that is not the training thread: the epochs' accounting), not handed over.
        """
        if not metrics or not self.bound:
            return
        if self._pending_step is not None and step != self._pending_step:
            self.send_pending(background=background)
        self._pending_step = step
        self._pending.update(metrics)
        for key, value in metrics.items():
            self._key_steps[key] = step
            self._last_values[key] = value
        handle = self._handle() if hold else None
        if handle is not None:  # spooled (not sent) within milliseconds: a training killed then keeps the step
            handle.recorder.hold_metrics(self._pending, step, background=background)

    def log_changed(self, metrics: Mapping[str, float], step: int, *, hold: bool = True, background: bool = True) -> dict[str, float]:
        """Queue only the metrics whose value differs from the last one logged; returns them."""
        changed = {k: v for k, v in metrics.items() if self._last_values.get(k) != v}
        self.log(changed, step, hold=hold, background=background)
        return changed

    def key_steps_logged(self, key_steps: Mapping[str, int]) -> None:
        """Points the run already holds (another callback's): later values of those keys go after them."""
        for key, step in key_steps.items():
            self._key_steps[key] = max(step, self._key_steps.get(key, step))

    def next_free_step(self, keys: Iterable[str], base: int) -> int:
        """The first step >= ``base`` at which none of ``keys`` has a point yet."""
        used = [self._key_steps[k] for k in keys if k in self._key_steps]
        return max([base, *(s + 1 for s in used)])

    def send_pending(self, *, background: bool = True, gather: bool = False) -> None:
        """Hand the held step's metrics to the writer (the training thread never waits for MLflow); ``background=False``:
        spooled by the calling thread (see :meth:`log`), with ``gather`` in one line with the next steps' (send_gathered)."""
        metrics, step = self._pending, self._pending_step
        self._pending, self._pending_step = {}, None
        handle = self._handle() if metrics and step is not None else None
        if handle is not None:
            # handed to the writer's spool thread: until it has kept them, the held copy stands for them
            handle.recorder.log_metrics(metrics, step=step, background=background, gather=gather)

    def send_gathered(self) -> None:  # the steps gathered by send_pending: spooled and queued now
        if self.run is not None:
            self.run.recorder.send_gathered()

    def log_tags(self, tags: Mapping[str, str], *, background: bool = False) -> None:
        """Queue run tags (``background=True``: handed to the writer's spool thread)."""
        handle = self._handle() if tags else None
        if handle is not None:
            handle.recorder.log_tags(tags, background=background)

    def log_report(self, report: Mapping[str, Any]) -> None:
        """Queue ``green/report.json``."""
        handle = self._handle()
        if handle is not None:
            handle.recorder.log_report(report)

    def flush(self) -> None:
        """Wait (at most the end timeout) until every queued write reached the server.

        Between fits (writes reopened on the last run) this also releases the writer.
        """
        self.send_pending()
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
        self.send_pending()
        run, self.run = self.run, None
        outer_calls.leave(self)
        self.still_in_call, self.in_call = None, False
        if run is None:
            return
        if not self._reopened:  # before the wait: a write meanwhile (another thread's evaluation) goes into this run
            self._last = run
        self._reopened = False
        if self.signing_key is not None:  # after every write of this fit or evaluation (see record.run_signature)
            run.recorder.sign(self.signing_key)
        run.finish(status)

    # -- pickling (ddp_spawn, copy.deepcopy) ----------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """The run's identity, not its connections; plus the MLflow context of the pickling process."""
        state = dict(self.__dict__)
        handle, uri = self.current, None
        if handle is not None:  # its server (read from its writer if it has one; none is opened for it)
            uri = handle.tracking_uri or getattr(handle._recorder, "tracking_uri", None)
        state.update(run=None, _last=None, _reopened=False, _pending_step=None, _pending={}, _run_id=self.run_id,
                     still_in_call=None, in_call=False)
        state["context"] = _mlflow_context() or self.context
        state["_last_uri"] = uri or (state["context"] or {}).get("tracking_uri")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A copy of a session that had bound a run writes after-fit figures (an evaluation) into that run, as
        the original would (the run of a ``ddp_spawn`` fit, handed back to the launching process, included)."""
        uri = state.pop("_last_uri", None)
        self.__dict__.update(state)
        if self._run_id is not None and uri:
            self._last = RunHandle(None, self._run_id, timeouts=self.timeouts, tracking_uri=uri)

    def _spawned_run(self, **resolve: Any) -> RunHandle | None:
        """In a process started from a pickled session (ddp_spawn): the launching process's run.

        The active run, tracking URI and experiment set with ``mlflow`` in the launching process
        are not inherited by a spawned process; the pickled session carries them.
        """
        context = self.context
        if not context or context.get("pid") == os.getpid() or resolve:
            return None
        import mlflow

        if mlflow.active_run() is not None:
            return None
        uri = context.get("tracking_uri")
        if uri and not os.environ.get("MLFLOW_TRACKING_URI") and mlflow.get_tracking_uri() != uri:
            mlflow.set_tracking_uri(uri)  # this process continues the launching one's logging
        if context.get("run_id"):
            return resolve_run(run_id=context["run_id"], tracking_uri=uri, timeouts=self.timeouts)
        return resolve_run(run_name=self.run_name, experiment_id=context.get("experiment_id"), timeouts=self.timeouts)


def _mlflow_context() -> dict[str, Any] | None:
    """The active run, tracking URI and experiment of this process (None if MLflow is not in use)."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return None
    try:
        from mlflow.tracking import fluent

        active = mlflow.active_run()
        experiment_id = active.info.experiment_id if active is not None else getattr(fluent, "_active_experiment_id", None)
        return {
            "pid": os.getpid(),
            "tracking_uri": mlflow.get_tracking_uri(),
            "run_id": active.info.run_id if active is not None else None,
            "experiment_id": experiment_id,
        }
    except Exception as exc:  # pickling never fails for this
        logger.debug("mlflow-green: MLflow context not captured: %s", exc)
        return None
