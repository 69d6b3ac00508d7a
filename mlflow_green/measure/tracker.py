"""The energy tracker: selected meters, counter snapshots, named windows, one sampler thread.

Framework-free and MLflow-free: it returns :class:`~mlflow_green.measure.readings.Measurement` values
in joules, watts and seconds. Logging to MLflow is :mod:`mlflow_green.track` and the callbacks.
Reading the meters (fail-over, device guard, the sampler thread) is
:mod:`~mlflow_green.measure.meter_reading`; named windows are :mod:`~mlflow_green.measure.windows`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mlflow_green.config import GreenConfig
from mlflow_green.errors import ConfigError, TrackerStateError
from mlflow_green.measure.attribution import Attribution, ProcessTree
from mlflow_green.measure.device_guard import MAX_PLAUSIBLE_POWER_W
from mlflow_green.measure.granularity import GranularityCheck
from mlflow_green.measure.host import host_id
from mlflow_green.measure.idle_floor import IdleFloor
from mlflow_green.measure.meter_reading import TrackerMeters
from mlflow_green.measure.meters.base import Meter
from mlflow_green.measure.pending_snapshot import MarkedReadings
from mlflow_green.measure.readings import DeviceCounter, Measurement, Snapshot
from mlflow_green.measure.sampler import Sampler
from mlflow_green.measure.selection import MeterSelection, instantiate, select_meters
from mlflow_green.measure.signal_safety import raised_by_signal_handler
from mlflow_green.measure.windows import MeterSpec, NamedWindows, WindowRecord, WindowResult, split_meters

logger = logging.getLogger(__name__)

__all__ = ["MAX_PLAUSIBLE_POWER_W", "EnergyTracker", "MeterSpec", "WindowRecord", "WindowResult"]


class EnergyTracker(MarkedReadings, NamedWindows):
    """Measures the energy of this process's host devices between ``start()`` and ``stop()``.

    Configuration is validated here, at construction, before any training starts. Counters are
    read only at window boundaries; a background thread runs only if a selected meter needs
    one (a GPU without an energy counter, a RAPL wraparound guard).

    Args:
        region: Carbon-intensity region (ISO 3166 code such as ``FRA`` / ``FR``, ``US-CA``),
            else ``MLFLOW_GREEN_REGION``, else the world average.
        pue: Power usage effectiveness of the data centre (≥ 1), else ``MLFLOW_GREEN_PUE``, else 1.0.
        meters: Meter names (``"nvml,rapl"`` or ``["rapl", "estimate"]``) in priority order,
            and/or :class:`~mlflow_green.measure.meters.base.Meter` instances (constructor injection).
            Default: every registered meter, chosen per component by priority.
        sample_interval_s: Power sampling interval for meters without a counter (default 0.1 s).
        intensity_provider: Name of a live carbon-intensity provider plugin (default: offline).
        scope: ``process`` (default, else ``MLFLOW_GREEN_SCOPE``): bill the GPUs this process tree
            holds and its share of CPU and RAM; ``machine``: whole devices (a dedicated host).
        config: A ready :class:`~mlflow_green.config.GreenConfig` instead of the above.
        clock: Monotonic clock in seconds (injectable for tests).
        device_filter: Keep only the devices this process owns (in distributed training, one
            rank per host measures the CPU and RAM, each rank its own GPU).
        processes: The process tree billed under ``scope="process"`` (default: this process and
            its children; distributed training excludes the other ranks).
        framework_gpus: Asked lazily, the UUIDs of the GPUs the framework says this process uses:
            the fallback when NVML's process lists cannot be matched to our PIDs (containers).
        synchronize: Called before counters are read at each window boundary (e.g.
            ``torch.cuda.synchronize``) so that work queued on a device is billed to the window
            that queued it. Must be cheap; its errors are logged and ignored.

    Example:
        >>> from mlflow_green import EnergyTracker
        >>> from mlflow_green.testing import FakeMeter
        >>> t = EnergyTracker(meters=[FakeMeter({"cpu:0": 50.0, "ram:0": 5.0})], region="FR")
        >>> t.start()
        >>> with t.window("epoch") as w:
        ...     pass
        >>> total = t.stop()
        >>> total.components
        ('cpu', 'ram')
        >>> t.config.carbon.region
        'FRA'
    """

    def __init__(
        self,
        *,
        region: str | None = None,
        pue: float | None = None,
        meters: str | Sequence[MeterSpec] | None = None,
        sample_interval_s: float | None = None,
        intensity_provider: str | None = None,
        scope: str | None = None,
        config: GreenConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        device_filter: Callable[[DeviceCounter], bool] | None = None,
        processes: ProcessTree | None = None,
        framework_gpus: Callable[[], Iterable[str]] | None = None,
        synchronize: Callable[[], object] | None = None,
    ) -> None:
        injected, names = split_meters(meters)
        if config is None:
            config = GreenConfig.resolve(
                region=region,
                pue=pue,
                meters=names if names or (meters is not None and not injected) else None,
                sample_interval_s=sample_interval_s,
                intensity_provider=intensity_provider,
                scope=scope,
            )
        elif any(v is not None for v in (region, pue, sample_interval_s, intensity_provider, scope)) or names:
            raise ConfigError("pass either config= or individual settings (region, pue, meters, ...), not both")
        self.config = config
        self.device_filter = device_filter
        self.processes = processes or ProcessTree()
        self.framework_gpus = framework_gpus
        self.synchronize = synchronize
        self._injected = injected
        self._clock = clock
        self.host = host_id()  # hostname + machine id: two hosts named alike stay two hosts
        self.selection: MeterSelection | None = None
        self._meters: TrackerMeters | None = None
        self._start: Snapshot | None = None
        self._end: Snapshot | None = None
        self.granularity = GranularityCheck()
        self.meter_reports: dict[str, Any] = {}
        self._sync_failed = False
        self._open_windows: dict[str, Snapshot] = {}
        self._windows: list[WindowRecord] = []
        self._closed: list[tuple[str, Snapshot, Snapshot]] = []  # closed by close(), recorded when read
        self.faults: list[str] = []
        self.idle_floor = IdleFloor()  # each device's lowest power between snapshots (report.json)
        self.started_at_unix_s: float | None = None
        self.total: Measurement | None = None

    def fresh(self) -> EnergyTracker:
        """A new, unstarted tracker with the same configuration and injected meters (one per fit)."""
        return _unpickled_tracker(self.config, list(self._injected), self._clock, self.device_filter, self.processes,
                                  self.framework_gpus, self.synchronize)

    @property
    def attribution(self) -> Attribution:
        """Whose energy the meters bill: the scope, this training's processes, the framework's GPUs."""
        return Attribution(self.config.scope, self.processes, self.framework_gpus)  # type: ignore[arg-type]

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (ddp_spawn, ``copy.deepcopy``) as its configuration: the copy is a fresh, unstarted tracker.

        A process tree rooted in the pickling process is re-rooted in the process that unpickles it;
        ``framework_gpus`` / ``synchronize`` closures (set per fit by the callbacks) are left out.
        """
        processes = None if self.processes.root_pid == os.getpid() and not self.processes.exclude_pids else self.processes
        hooks = [hook if _by_reference(hook) else None for hook in (self.framework_gpus, self.synchronize)]
        return (_unpickled_tracker, (self.config, list(self._injected), self._clock, self.device_filter, processes, *hooks))

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._start is not None and self.total is None

    def start(self) -> None:
        """Select and open the meters, start the sampler if needed, read the start counters."""
        if self._start is not None:
            raise TrackerStateError("this EnergyTracker was already started; create a new one per run")
        explicit = bool(self._injected or self.config.meters)
        if explicit:  # the user's order is the priority; estimate stays as the CPU/RAM fallback
            candidates = list(self._injected) + instantiate(self.config.meters or ())
        else:
            candidates = instantiate(None)
        self.selection = select_meters(candidates, explicit_order=explicit)
        self._meters = TrackerMeters(
            self.selection,
            explicit=explicit,
            clock=self._clock,
            fault=self._fault,
            attribution=self.attribution,
            sample_interval_s=self.config.sample_interval_s,
        )
        self.started_at_unix_s = time.time()
        self._start = self.snapshot()

    def stop(self) -> Measurement:
        """Read the final counters, stop the sampler, close the meters; return the total."""
        if self._start is None:
            raise TrackerStateError("stop() called before start()")
        if self.total is not None:
            return self.total
        self._processes_call("look")  # a process started since the last look is in the last read
        end = self.snapshot()
        self._record_closed()  # windows closed with close(): checked while the meters know their periods
        meters = self._meters
        if meters is not None:
            meters.stop_sampler()
            self.granularity.periods_s.update(meters.update_periods_s())
            self.meter_reports.update(meters.close())
        self._processes_call("release")  # the process reader's thread and descriptors
        self._end = end
        self.total = end - self._start
        self.granularity.recheck()  # windows and epochs that closed before the update periods were learnt
        self.granularity.check(self.total, "total", {})
        return self.total

    def _processes_call(self, name: str) -> None:
        """Call the process tree's optional ``look`` / ``release`` (a fake may have neither); never raises."""
        method = getattr(self.processes, name, None)
        if callable(method):
            try:
                method()
            except Exception as exc:  # measurement never crashes training
                logger.debug("mlflow-green: process tree %s failed: %s", name, exc)

    def __enter__(self) -> EnergyTracker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading -----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Every device's cumulative counter now. Never raises for a meter failure.

        A meter whose ``read()`` raises is quarantined: its components pass to the next
        available meter by priority (opened now), its devices keep the energy counted so far,
        and the switch shows in ``green.meters`` (``cpu:rapl>estimate``) and in ``faults``.
        """
        meters = self._meters
        if meters is None:
            raise TrackerStateError("snapshot() called before start()")
        if self.synchronize is not None:
            self._synchronize_devices()
        now_s, fresh = meters.read()
        keep = self.device_filter
        devices = tuple(fresh.values()) if keep is None else tuple(d for d in fresh.values() if keep(d))
        if self.total is None:
            meters.ensure_sampler()
        snap = Snapshot(now_s, devices, host=self.host)
        self.idle_floor.observe(snap)
        return snap

    def _synchronize_devices(self) -> None:
        """Wait for the work queued on the devices, so that it is billed to the window ending now."""
        if self.synchronize is None:
            return
        try:
            self.synchronize()
        except Exception as exc:  # measurement never crashes training
            if raised_by_signal_handler(exc):  # a SIGTERM's handler raised while the devices were waited for
                raise
            if not self._sync_failed:
                self._sync_failed = True
                logger.warning("mlflow-green: synchronising the devices before reading counters failed: %s", exc)

    # -- meters ------------------------------------------------------------------------------
    @property
    def _sampler(self) -> Sampler | None:
        """The sampler thread of the started meters (None before ``start()``)."""
        return self._meters.sampler if self._meters is not None else None

    @property
    def start_snapshot(self) -> Snapshot:
        """The counters read by ``start()``."""
        if self._start is None:
            raise TrackerStateError("the tracker has not been started")
        return self._start

    @property
    def end_snapshot(self) -> Snapshot:
        """The counters read by ``stop()``."""
        if self._end is None:
            raise TrackerStateError("the tracker has not been stopped")
        return self._end

    def clock_s(self) -> float:
        """The tracker's clock now (the clock of its snapshots' ``timestamp_s``), without reading a meter."""
        return self._clock()

    def elapsed(self) -> Measurement:
        """The measurement from ``start()`` until now, without stopping."""
        if self._start is None:
            raise TrackerStateError("elapsed() called before start()")
        if self.total is not None:
            return self.total
        return self.snapshot() - self._start

    # -- windows (NamedWindows) -------------------------------------------------------------
    def _update_periods_s(self) -> dict[str, float]:
        return self._meters.update_periods_s() if self._meters is not None else {}

    # -- descriptions ------------------------------------------------------------------------
    def meters_tag(self) -> str:
        """The ``green.meters`` tag: which meter measured each component, e.g. ``cpu:rapl,ram:estimate``.

        A component whose meter failed mid-run lists the meters in order: ``gpu:nvml-counter>estimate``.
        """
        return self._meters.meters_tag() if self._meters is not None else ""

    def _fault(self, meter: Meter, message: str) -> None:
        text = f"{meter.name}: {message}"
        if text not in self.faults:
            self.faults.append(text)
            logger.warning("mlflow-green: meter %s", text)


def _by_reference(fn: object) -> bool:
    """True for None and module-level functions (pickled by name), False for closures and lambdas."""
    return fn is None or "<" not in getattr(fn, "__qualname__", "<")


def _unpickled_tracker(config: GreenConfig, meters: list[Meter], clock: Callable[[], float],
                       device_filter: Callable[[DeviceCounter], bool] | None, processes: ProcessTree | None,
                       framework_gpus: Callable[[], Iterable[str]] | None = None,
                       synchronize: Callable[[], object] | None = None) -> EnergyTracker:
    return EnergyTracker(config=config, meters=meters, clock=clock, device_filter=device_filter, processes=processes,
                         framework_gpus=framework_gpus, synchronize=synchronize)
