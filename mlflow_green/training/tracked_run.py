"""``mlflow_green.track()``: measure any block of training code and log it into an MLflow run.

Example::

    import mlflow_green
    with mlflow_green.track() as t:
        for epoch in range(3):
            train_one_epoch()
            t.log_step(epoch, samples=60_000)
    t.measurement.energy_j
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from mlflow_green._version import __version__
from mlflow_green.errors import ConfigError
from mlflow_green.measure import hardware
from mlflow_green.measure.readings import Measurement, Snapshot
from mlflow_green.measure.tracker import EnergyTracker, MeterSpec
from mlflow_green.record import schema
from mlflow_green.record.bounded_read import read_within
from mlflow_green.record.latest_steps import latest_steps
from mlflow_green.record.metrics import energy_metrics, measured_gpus, run_tags
from mlflow_green.record.recorder import RunRecorder
from mlflow_green.record.report import build_report
from mlflow_green.record.runs import RunHandle, resolve_run, users_run_id
from mlflow_green.record.signing import SigningKey
from mlflow_green.record.timeouts import RunTimeouts
from mlflow_green.training import outer_calls
from mlflow_green.training.held_step import HeldStep
from mlflow_green.training.outer_calls import MeasuredBlock
from mlflow_green.training.termination import SigtermWatch
from mlflow_green.validation import check_bool, check_name

logger = logging.getLogger(__name__)


class TrackedRun(contextlib.ContextDecorator):
    """Measures a block of code and logs energy, emissions, tags and ``green/report.json``.

    It logs into the active MLflow run, or starts its own run and ends it (``FAILED`` if the
    block raised, ``KILLED`` on Ctrl-C, with the energy measured so far logged). Configuration
    errors are raised at construction, before the block runs. Measuring and writing to MLflow
    never raise into the block, and never make it wait long: at most ``start_timeout_s`` for the
    run to be created on entry and ``end_timeout_s`` for the writes to be sent on exit (what is
    not sent by then is spooled, see ``docs/reliability.md``). The meters measure the block only.

    Args:
        run_name: Name of the run started when none is active.
        log_report: Write ``green/report.json`` at the end.
        region: Carbon-intensity region; see :class:`~mlflow_green.measure.tracker.EnergyTracker`.
        pue: Power usage effectiveness (≥ 1).
        meters: Meter names or instances, in priority order.
        sample_interval_s: Power sampling interval for meters without a counter.
        intensity_provider: Name of a live carbon-intensity provider plugin.
        scope: ``process`` (default, else ``MLFLOW_GREEN_SCOPE``): bill this process tree's GPUs
            and share of CPU and RAM; ``machine``: whole devices (a dedicated host).
        start_timeout_s: Longest wait for MLflow to create the run (default
            ``MLFLOW_GREEN_START_TIMEOUT_S`` or 2 s); then the creation is spooled.
        end_timeout_s: Longest wait for the writes to be sent on exit (default
            ``MLFLOW_GREEN_END_TIMEOUT_S`` or 30 s); then they stay spooled.
        synchronize: Called before the counters are read (entering, at each :meth:`log_step`,
            leaving) to wait for the work queued on the GPU, so that a step's GPU work is billed to
            it and the block's to the block — what the callbacks do for you. For PyTorch on CUDA:
            ``torch.cuda.synchronize``; TensorFlow: ``tf.test.experimental.sync_devices``. Its
            errors are logged once, never raised into the block.

    Raises:
        ConfigError: at construction, for any invalid argument (``synchronize`` not callable).

    Example::

        import mlflow_green

        @mlflow_green.track(region="FR")
        def train():
            ...

        with mlflow_green.track(synchronize=torch.cuda.synchronize) as t:
            ...
    """

    def __init__(
        self,
        *,
        run_name: str | None = None,
        log_report: bool = True,
        region: str | None = None,
        pue: float | None = None,
        meters: str | Sequence[MeterSpec] | None = None,
        sample_interval_s: float | None = None,
        intensity_provider: str | None = None,
        scope: str | None = None,
        start_timeout_s: float | None = None,
        end_timeout_s: float | None = None,
        synchronize: Callable[[], object] | None = None,
    ) -> None:
        check_name("run_name", run_name, example="baseline")
        if synchronize is not None and not callable(synchronize):
            raise ConfigError(
                f"synchronize must be a function that waits for the GPU's queued work (e.g. torch.cuda.synchronize) "
                f"or None; got {type(synchronize).__name__} {synchronize!r}"
            )
        check_bool("log_report", log_report)
        self.run_name = run_name
        self.log_report = log_report
        self.timeouts = RunTimeouts.resolve(start_timeout_s=start_timeout_s, end_timeout_s=end_timeout_s)
        self.tracker = EnergyTracker(
            region=region,
            pue=pue,
            meters=meters,
            sample_interval_s=sample_interval_s,
            intensity_provider=intensity_provider,
            scope=scope,
            synchronize=synchronize,
        )
        self.measurement: Measurement | None = None
        self._run: RunHandle | None = None
        self._block: MeasuredBlock | None = None  # the block as an outer call, while it runs
        self._recorder: RunRecorder | None = None
        self._last_step: int | None = None
        self._held: HeldStep | None = None  # the last step's values, sent with the next step or the final totals
        self._last_snapshot: Snapshot | None = None
        self._samples = 0
        self._closed = False
        self._entering = threading.Lock()
        self._inner: dict[int, list[TrackedRun]] = {}  # entries while it ran, by thread (see __enter__)
        self._sigterm = SigtermWatch(lambda: self._close("KILLED"))
        self._signing_key = SigningKey.from_env()  # MLFLOW_GREEN_SIGNING_KEY; a bad key fails here

    @property
    def run_id(self) -> str | None:
        """The MLflow run (None if it could not be created yet: its creation is spooled)."""
        return self._run.run_id if self._run is not None else None

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate ``func``: each call measured in a run of its own. A coroutine function's calls are measured
        until they return (awaited); a generator function cannot be decorated (ConfigError): its body runs while
        it is iterated, outside the call — a decorated generator measured nothing but its creation."""
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise ConfigError(f"track() cannot decorate the generator function {getattr(func, '__qualname__', func)!r}: "
                              "its body runs as it is iterated, after the call returned. Use `with track():` around "
                              "the loop that consumes it, or inside the generator.")
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def measured(*args: Any, **kwargs: Any) -> Any:
                with self._recreate_cm():
                    return await func(*args, **kwargs)

            return measured
        return super().__call__(func)

    def _recreate_cm(self) -> TrackedRun:  # each decorated call measures afresh, in its own run
        fresh = TrackedRun.__new__(TrackedRun)
        fresh.__init__(run_name=self.run_name, log_report=self.log_report)  # type: ignore[misc]
        fresh.tracker = self.tracker.fresh()
        fresh.timeouts = self.timeouts
        return fresh

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> TrackedRun:
        with self._entering:  # two threads entering one object at once: one measures it, the other a copy
            if self.tracker.running and not self._closed:  # entered again while it runs (nested, another thread)
                inner = self._recreate_cm()  # measured afresh, in a child run; ``with t as inner:`` names it
                self._inner.setdefault(threading.get_ident(), []).append(inner)
            else:
                return self._enter()
        return inner.__enter__()

    def _enter(self) -> TrackedRun:
        if self.tracker.started_at_unix_s is not None:  # the same track() object entered again: a fresh measurement
            self.tracker, self.measurement, self._held, self._last_step = self.tracker.fresh(), None, None, None
            self._last_snapshot, self._samples = None, 0
        outer = outer_calls.outer_calls(exclude=None)  # inside another block (or a callback's fit): a child run
        try:  # at most timeouts.start_s; the meters do not run meanwhile
            self._run = resolve_run(run_name=self.run_name, timeouts=self.timeouts, parent=outer[-1].run if outer else None,
                                    nested=not outer and _active_run_measured(self.timeouts.start_s))
            self._recorder = self._run.recorder
            self._block = MeasuredBlock(self._run)  # a callback's fit inside the block gets a child run of it
            outer_calls.enter(self._block)
        except Exception as exc:  # measurement never stops the training
            logger.warning("mlflow-green: no MLflow run to log into (%s); measuring without logging", exc)
        self.tracker.start()
        self._closed = False
        self._sigterm.take()  # SIGTERM: the run ends KILLED at that moment, then the process terminates
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        inner = self._inner.get(threading.get_ident())
        if inner:  # this thread's innermost entry of the object while it ran
            return inner.pop().__exit__(exc_type, exc, tb)
        status = "FINISHED"
        if exc_type is not None:
            status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        self._close(status)
        return False

    def _close(self, status: str) -> None:
        """Stop measuring, log the totals, end the run with ``status`` (once: ``__exit__`` or SIGTERM)."""
        if self._closed:
            return
        self._closed = True
        self._sigterm.restore()
        if self._block is not None:
            outer_calls.leave(self._block)
        try:
            self.measurement = self.tracker.stop()  # before any waiting on MLflow
            if self._recorder is not None:
                self._log_totals(status)
        except Exception as error:  # measurement never crashes training
            logger.warning("mlflow-green: could not finish measuring: %s", error)
        finally:
            if self._run is not None:
                self._run.finish(status)  # at most timeouts.end_s

    # -- progress ----------------------------------------------------------------------------
    def add_samples(self, samples: int) -> None:
        """Count processed samples, for ``green/energy_per_sample_j``."""
        self._samples += int(samples)

    def log_step(self, step: int, *, samples: int | None = None) -> Measurement:
        """Log running totals at ``step`` (e.g. the epoch) and return the energy since the last step."""
        if self._closed or not self.tracker.running:  # outside the block: nothing is measured there
            logger.warning("mlflow-green: log_step(%s) outside the track() block (%s): nothing logged", step,
                           "it has ended" if self._closed else "it has not begun")
            return Measurement(0.0)
        if samples:
            self.add_samples(samples)
        now = self.tracker.snapshot()
        window = now - (self._last_snapshot or self.tracker.start_snapshot)
        total = now - self.tracker.start_snapshot
        self._last_snapshot = now
        self._last_step = int(step)
        if self._recorder is not None:
            cfg = self.tracker.config
            metrics = energy_metrics(total, cfg.carbon, cfg.pue, window=window, samples=self._samples)
            if self._held is None:
                self._held = HeldStep(self._recorder)
            self._last_step = self._held.hold(metrics, self._last_step)  # the block's end sends it with its totals
        return window

    def _log_totals(self, status: str) -> None:
        assert self.measurement is not None
        cfg = self.tracker.config
        total = self.measurement
        totals = energy_metrics(total, cfg.carbon, cfg.pue, samples=self._samples)
        if self._held is None or self._held.finish(totals) is None:  # one point: the whole block is the window
            metrics = energy_metrics(total, cfg.carbon, cfg.pue, window=total, samples=self._samples)
            self._recorder.log_metrics(metrics, step=0)
        self._recorder.log_tags(
            run_tags(
                version=__version__,
                meters=self.tracker.meters_tag(),
                estimated=total.estimated,
                carbon=cfg.carbon,
                pue=cfg.pue,
                cpu=hardware.cpu_model(),
                gpu=measured_gpus(total),
                scope=total.scope_tag(),
            )
        )
        if self.log_report:
            self._recorder.log_report(build_report(self.tracker, total, extra={"samples": self._samples, "status": status}))
        if self._signing_key is not None:  # sent after the values above (see record.run_signature)
            self._recorder.sign(self._signing_key)


def _active_run_measured(timeout_s: float) -> bool:
    """True when the active run already holds ``green/`` running totals (an earlier block's, a fit's): a block in
    it gets a child run, with a warning — its own totals and steps from zero would clash with them. Read in a
    worker thread for at most ``timeout_s`` (the start timeout); not read in time: as holding none."""
    import mlflow

    run_id = users_run_id()  # the active run, or MLFLOW_RUN_ID's
    if run_id is None:
        return False
    held = read_within(lambda: schema.ENERGY_KWH in latest_steps(mlflow.MlflowClient(), run_id, (schema.ENERGY_KWH,)),
                       timeout_s, what="the active run's earlier figures", consequence="the block logs into it")
    if held:
        logger.warning("mlflow-green: the active run %s already holds green/ figures (an earlier measurement); this "
                       "track() block logs into a child run of it", run_id)
    return held


track = TrackedRun
"""``mlflow_green.track(...)``: measure a block of code (``with`` statement or decorator) and log
it into MLflow. An alias of :class:`TrackedRun`; see there for the arguments."""
