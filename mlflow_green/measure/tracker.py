"""The energy tracker: selected meters, counter snapshots, named windows, one sampler thread.

Framework-free and MLflow-free: it returns :class:`~mlflow_green.measure.readings.Measurement` values
in joules, watts and seconds. Logging to MLflow is :mod:`mlflow_green.track` and the callbacks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mlflow_green.config import GreenConfig
from mlflow_green.errors import ConfigError, TrackerStateError
from mlflow_green.measure.attribution import Attribution, ProcessTree
from mlflow_green.measure.device_guard import MAX_PLAUSIBLE_POWER_W, DeviceGuard
from mlflow_green.measure.granularity import GranularityCheck
from mlflow_green.measure.host import host_id
from mlflow_green.measure.idle_floor import IdleFloor
from mlflow_green.measure.meters.base import Availability, Meter
from mlflow_green.measure.readings import (
    COMPONENTS,
    Component,
    DeviceCounter,
    Measurement,
    Provenance,
    Snapshot,
    join_shares,
    share_label,
    weakest_provenance,
)
from mlflow_green.measure.sampler import Sampler
from mlflow_green.measure.selection import MeterSelection, instantiate, select_meters

logger = logging.getLogger(__name__)

MeterSpec = str | Meter

__all__ = ["MAX_PLAUSIBLE_POWER_W", "EnergyTracker", "MeterSpec", "WindowRecord", "WindowResult"]


@dataclass(frozen=True)
class WindowRecord:
    """A closed window: its name, when it began (seconds after start) and what it measured."""

    name: str
    start_offset_s: float
    measurement: Measurement

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view for ``report.json``."""
        return {"name": self.name, "start_offset_s": self.start_offset_s, **self.measurement.to_dict()}


class EnergyTracker:
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
        injected, names = _split_meters(meters)
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
        self._lock = threading.Lock()
        self.host = host_id()  # hostname + machine id: two hosts named alike stay two hosts
        self.selection: MeterSelection | None = None
        self._sampler: Sampler | None = None
        self._start: Snapshot | None = None
        self._end: Snapshot | None = None
        self._last_good: dict[str, tuple[float, DeviceCounter]] = {}
        self._guard = DeviceGuard(0.0)
        self.granularity = GranularityCheck()
        self.meter_reports: dict[str, Any] = {}
        self._sync_failed = False
        self._carry: dict[str, DeviceCounter] = {}
        self._assign: dict[Component, Meter] = {}
        self._history: dict[Component, list[str]] = {}
        self._opened: dict[int, Meter] = {}
        self._failed: set[int] = set()
        self._explicit = False
        self._start_s = 0.0
        self._open_windows: dict[str, Snapshot] = {}
        self.windows: list[WindowRecord] = []
        self.faults: list[str] = []
        self.idle_floor = IdleFloor()  # each device's lowest power between snapshots (report.json)
        self.started_at_unix_s: float | None = None
        self.total: Measurement | None = None

    def fresh(self) -> EnergyTracker:
        """A new, unstarted tracker with the same configuration and injected meters (one per fit)."""
        return EnergyTracker(
            config=self.config,
            meters=list(self._injected),
            clock=self._clock,
            device_filter=self.device_filter,
            processes=self.processes,
            framework_gpus=self.framework_gpus,
            synchronize=self.synchronize,
        )

    @property
    def attribution(self) -> Attribution:
        """Whose energy the meters bill: the scope, this training's processes, the framework's GPUs."""
        return Attribution(self.config.scope, self.processes, self.framework_gpus)  # type: ignore[arg-type]

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._start is not None and self.total is None

    def start(self) -> None:
        """Select and open the meters, start the sampler if needed, read the start counters."""
        if self._start is not None:
            raise TrackerStateError("this EnergyTracker was already started; create a new one per run")
        self._explicit = bool(self._injected or self.config.meters)
        if self._explicit:  # the user's order is the priority; estimate stays as the CPU/RAM fallback
            candidates = list(self._injected) + instantiate(self.config.meters or ())
        else:
            candidates = instantiate(None)
        self.selection = select_meters(candidates, explicit_order=self._explicit)
        self._assign = dict(self.selection.assignments)
        now_s = self._clock()
        self._start_s = now_s
        for meter in self.selection.meters:  # labels show the scope they bill (rapl-counter*cpu-time)
            self._attribute(meter)
        self._guard = DeviceGuard(now_s)
        self._history = {c: [m.label(c, self._availability(m).provenance)] for c, m in self._assign.items()}
        for meter in self.selection.meters:
            if not self._open(meter, now_s):
                self._fail_over(meter, now_s, "open() failed")
        self._restart_sampler()
        self.started_at_unix_s = time.time()
        self._start = self.snapshot()

    def stop(self) -> Measurement:
        """Read the final counters, stop the sampler, close the meters; return the total."""
        if self._start is None:
            raise TrackerStateError("stop() called before start()")
        if self.total is not None:
            return self.total
        end = self.snapshot()
        if self._sampler is not None:
            self._sampler.stop()
        self.granularity.periods_s.update(self._update_periods_s())
        for meter in self._opened.values():
            try:
                report = dict(meter.report())
                if report:
                    self.meter_reports[meter.name] = report
            except Exception as exc:
                logger.debug("meter %s could not report: %s", meter.name, exc)
            try:
                meter.close()
            except Exception as exc:
                logger.debug("closing meter %s failed: %s", meter.name, exc)
        self._end = end
        self.total = end - self._start
        flagged = {c["window"] for c in self.granularity.coarse}
        for window in self.windows:  # update periods learnt after the window closed
            if window.name not in flagged:
                self.granularity.check(window.measurement, window.name, {})
        self.granularity.check(self.total, "total", {})
        return self.total

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
        if self.selection is None:
            raise TrackerStateError("snapshot() called before start()")
        self._synchronize_devices()
        with self._lock:
            now_s = self._clock()
            fresh: dict[str, DeviceCounter] = {}
            pending = _distinct(self._assign.values())
            while pending:
                meter = pending.pop(0)
                wanted = {c for c, m in self._assign.items() if m is meter}
                try:
                    readings = [d for d in meter.read(now_s) if d.component in wanted]
                except Exception as exc:  # measurement never crashes training
                    pending.extend(m for m in self._fail_over(meter, now_s, f"read() failed: {exc}") if m not in pending)
                    continue
                for fault in _safe(meter.take_faults, []):
                    self._fault(meter, fault)
                for reading in readings:  # a device that reads nonsense is quarantined alone
                    checked, fault = self._guard.check(reading, now_s)
                    if fault:
                        self._fault(meter, fault)
                    if checked is not None:
                        fresh[reading.device_id] = self._with_carry(checked)
            for device_id, carried in self._carry.items():
                if device_id not in fresh:
                    fresh[device_id] = self._carried_now(carried, now_s)
            for device in fresh.values():
                self._last_good[device.device_id] = (now_s, device)
        devices = tuple(d for d in fresh.values() if self.device_filter is None or self.device_filter(d))
        self._ensure_sampler()
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
            if not self._sync_failed:
                self._sync_failed = True
                logger.warning("mlflow-green: synchronising the devices before reading counters failed: %s", exc)

    # -- failover ----------------------------------------------------------------------------
    def _availability(self, meter: Meter) -> Availability:
        assert self.selection is not None
        for choice in self.selection.choices:
            if choice.meter is meter:
                return choice.availability
        return Availability.no("not considered")

    def _open(self, meter: Meter, now_s: float) -> bool:
        configure = getattr(meter, "configure", None)
        if callable(configure):
            with contextlib.suppress(Exception):
                configure(sample_interval_s=self.config.sample_interval_s)
        self._attribute(meter)
        try:
            meter.open(now_s)
        except Exception as exc:  # measurement never crashes training
            self._fault(meter, f"open() failed: {exc}")
            return False
        self._opened[id(meter)] = meter
        return True

    def _attribute(self, meter: Meter) -> None:
        try:
            meter.attribute(self.attribution)
        except Exception as exc:  # a plugin's hook must not break measurement: it bills whole devices
            self._fault(meter, f"attribute() failed: {exc}")

    def _fail_over(self, meter: Meter, now_s: float, reason: str) -> list[Meter]:
        """Quarantine ``meter``; hand its components to the next meters by priority; return those."""
        assert self.selection is not None
        self._fault(meter, reason)
        self._failed.add(id(meter))
        for device_id, (seen_s, counter) in list(self._last_good.items()):
            if counter.meter == meter.name and device_id not in self._carry:
                self._carry[device_id] = self._extrapolated(counter, seen_s, now_s, f"{meter.name} failed: {reason}")
        replacements: list[Meter] = []
        for component in [c for c, m in self._assign.items() if m is meter]:
            del self._assign[component]
            for candidate in (c.meter for c in self.selection.choices):
                avail = self._availability(candidate)
                if (
                    id(candidate) in self._failed
                    or not avail.available
                    or component not in avail.components
                    or (not self._explicit and candidate.priority < 0)
                ):
                    continue
                if id(candidate) not in self._opened and not self._open(candidate, now_s):
                    self._failed.add(id(candidate))
                    continue
                self._assign[component] = candidate
                self._history.setdefault(component, []).append(candidate.label(component, avail.provenance))
                if candidate not in replacements:
                    replacements.append(candidate)
                break
            else:  # nothing else measures it: its devices are extrapolated at their mean power
                self._history.setdefault(component, []).append("extrapolated")
        if self._sampler is not None:  # already running: include the replacements
            self._restart_sampler()
        return replacements

    def _extrapolated(self, counter: DeviceCounter, seen_s: float, now_s: float, note: str) -> DeviceCounter:
        """``counter`` carried forward from ``seen_s`` to ``now_s`` at its mean power so far."""
        elapsed_s = seen_s - self._start_s
        power_w = counter.energy_j / elapsed_s if elapsed_s > 0 else 0.0
        gap_s = max(now_s - seen_s, 0.0)
        if gap_s <= 0:
            return counter
        return replace(
            counter,
            energy_j=counter.energy_j + power_w * gap_s,
            provenance="estimate",
            note=counter.note or f"{note}; extrapolated at its mean power of {power_w:.1f} W",
        )

    def _with_carry(self, reading: DeviceCounter) -> DeviceCounter:
        carried = self._carry.get(reading.device_id)
        if carried is None:
            return reading
        return replace(
            reading,
            energy_j=carried.energy_j + reading.energy_j,
            provenance=weakest_provenance((carried.provenance, reading.provenance)),
            note=carried.note or reading.note,
        )

    def _carried_now(self, carried: DeviceCounter, now_s: float) -> DeviceCounter:
        """A failed meter's device: frozen if another meter now covers its component, else extrapolated."""
        if carried.component in self._assign:
            return carried
        seen_s, last = self._last_good.get(carried.device_id, (now_s, carried))
        return self._extrapolated(last, seen_s, now_s, carried.note or "meter failed")

    def _restart_sampler(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        self._sampler = Sampler(_distinct(self._assign.values()), clock=self._clock)
        self._sampler.start()

    def _ensure_sampler(self) -> None:
        """Start the thread if a meter has come to need it since (a shared GPU, say)."""
        if self._sampler is not None and self.total is None and not self._sampler.running and self._sampler.needed:
            self._sampler.start()

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

    def elapsed(self) -> Measurement:
        """The measurement from ``start()`` until now, without stopping."""
        if self._start is None:
            raise TrackerStateError("elapsed() called before start()")
        if self.total is not None:
            return self.total
        return self.snapshot() - self._start

    # -- windows -----------------------------------------------------------------------------
    def begin(self, name: str) -> Snapshot:
        """Open the window ``name`` (an epoch, a phase); returns its start snapshot."""
        if not self.running:
            raise TrackerStateError(f"begin({name!r}) called while the tracker is not running")
        snap = self.snapshot()
        self._open_windows[name] = snap
        return snap

    def end(self, name: str) -> Measurement:
        """Close the window ``name`` and return what it measured."""
        begin = self._open_windows.pop(name, None)
        if begin is None:
            raise TrackerStateError(f"end({name!r}) called without a matching begin({name!r})")
        measurement = self.snapshot() - begin
        offset_s = begin.timestamp_s - (self._start.timestamp_s if self._start else begin.timestamp_s)
        self.windows.append(WindowRecord(name, offset_s, measurement))
        self.check_granularity(measurement, name)
        return measurement

    def check_granularity(self, measurement: Measurement, name: str) -> bool:
        """Flag (in report.json, and once in the log) a window shorter than 10 counter update periods.

        The tracker checks its own windows; callers that subtract snapshots themselves (epochs)
        call this with their window. Returns True when the window is flagged.
        """
        return self.granularity.check(measurement, name, self._update_periods_s() if self.total is None else {})

    @property
    def counter_update_period_s(self) -> float | None:
        """The slowest known update period of the counters in use, in seconds (None: none known yet).

        NVML learns its counters' periods in the first second or two after start.
        """
        periods = {**self.granularity.periods_s, **(self._update_periods_s() if self.total is None else {})}
        return max(periods.values()) if periods else None

    def _update_periods_s(self) -> dict[str, float]:
        periods: dict[str, float] = {}
        for meter in self._opened.values():
            periods.update(_safe(meter.update_periods_s, {}))
        return periods

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator[WindowResult]:
        """Measure a ``with`` block; the result's ``measurement`` is set when the block exits."""
        result = WindowResult(name)
        self.begin(name)
        try:
            yield result
        finally:
            result.measurement = self.end(name)

    # -- descriptions ------------------------------------------------------------------------
    def meters_tag(self) -> str:
        """The ``green.meters`` tag: which meter measured each component, e.g. ``cpu:rapl,ram:estimate``.

        A component whose meter failed mid-run lists the meters in order: ``gpu:nvml-counter>estimate``.
        """
        if self.selection is None:
            return ""
        provenance: dict[str, list[Provenance]] = {}
        shares: dict[str, list[str]] = {}
        for _, device in self._last_good.values():
            if device.device_id not in self._carry:
                provenance.setdefault(device.component, []).append(device.provenance)
                shares.setdefault(device.component, []).append(device.share)
        parts = []
        for component in COMPONENTS:
            labels = list(self._history.get(component, []))
            meter = self._assign.get(component)
            if meter is not None and component in provenance and labels:
                label = meter.label(component, weakest_provenance(provenance[component]))
                share = join_shares(*shares[component])
                # A reading apportioned by a share says so (gpu:nvml-counter*mig), whatever the meter's label
                labels[-1] = label if "*" in label or not share else share_label(label, share)
            if labels:
                parts.append(f"{component}:{'>'.join(labels)}")
        return ",".join(parts)

    def _fault(self, meter: Meter, message: str) -> None:
        text = f"{meter.name}: {message}"
        if text not in self.faults:
            self.faults.append(text)
            logger.warning("mlflow-green: meter %s", text)


class WindowResult:
    """Filled in when a :meth:`EnergyTracker.window` block exits."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.measurement: Measurement | None = None


def _safe(call: Callable[[], Any], default: Any) -> Any:
    """A meter's optional hook, whose failure must not break measurement."""
    try:
        return call()
    except Exception as exc:
        logger.debug("mlflow-green: meter hook %s failed: %s", getattr(call, "__name__", call), exc)
        return default


def _distinct(meters: Iterable[Meter]) -> list[Meter]:
    seen: dict[int, Meter] = {}
    for meter in meters:
        seen.setdefault(id(meter), meter)
    return list(seen.values())


def _split_meters(meters: str | Sequence[MeterSpec] | None) -> tuple[list[Meter], list[str]]:
    if meters is None:
        return [], []
    if isinstance(meters, str):
        return [], [m.strip() for m in meters.split(",") if m.strip()]
    if isinstance(meters, Meter):
        return [meters], []
    if not isinstance(meters, Sequence):
        raise ConfigError(
            f"meters= takes meter names ('rapl,estimate' or a list) or Meter instances, got {type(meters).__name__}: {meters!r}"
        )
    injected: list[Meter] = []
    names: list[str] = []
    for item in meters:
        if isinstance(item, Meter):
            injected.append(item)
        elif isinstance(item, str):
            names.append(item)
        else:
            raise ConfigError(
                f"meters= takes meter names or Meter instances, got {type(item).__name__}: {item!r}"
            )
    return injected, names
