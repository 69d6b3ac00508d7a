"""The energy tracker: selected meters, counter snapshots, named windows, one sampler thread.

Framework-free and MLflow-free: it returns :class:`~mlflow_green.readings.Measurement` values
in joules, watts and seconds. Logging to MLflow is :mod:`mlflow_green.track` and the callbacks.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mlflow_green.config import GreenConfig
from mlflow_green.errors import ConfigError, TrackerStateError
from mlflow_green.meters.base import Meter
from mlflow_green.readings import COMPONENTS, DeviceCounter, Measurement, Snapshot, weakest_provenance
from mlflow_green.sampler import Sampler
from mlflow_green.selection import MeterSelection, instantiate, select_meters

logger = logging.getLogger(__name__)

MeterSpec = str | Meter


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
            and/or :class:`~mlflow_green.meters.base.Meter` instances (constructor injection).
            Default: every registered meter, chosen per component by priority.
        sample_interval_s: Power sampling interval for meters without a counter (default 0.1 s).
        intensity_provider: Name of a live carbon-intensity provider plugin (default: offline).
        config: A ready :class:`~mlflow_green.config.GreenConfig` instead of the above.
        clock: Monotonic clock in seconds (injectable for tests).

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
        config: GreenConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        injected, names = _split_meters(meters)
        if config is None:
            config = GreenConfig.resolve(
                region=region,
                pue=pue,
                meters=names if names else None,
                sample_interval_s=sample_interval_s,
                intensity_provider=intensity_provider,
            )
        elif any(v is not None for v in (region, pue, sample_interval_s, intensity_provider)) or names:
            raise ConfigError("pass either config= or individual settings (region, pue, meters, ...), not both")
        self.config = config
        self._injected = injected
        self._clock = clock
        self._lock = threading.Lock()
        self.host = socket.gethostname()
        self.selection: MeterSelection | None = None
        self._sampler: Sampler | None = None
        self._start: Snapshot | None = None
        self._end: Snapshot | None = None
        self._last_good: dict[str, DeviceCounter] = {}
        self._open_windows: dict[str, Snapshot] = {}
        self.windows: list[WindowRecord] = []
        self.faults: list[str] = []
        self.started_at_unix_s: float | None = None
        self.total: Measurement | None = None

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
        now_s = self._clock()
        for meter in self.selection.meters:
            configure = getattr(meter, "configure", None)
            if callable(configure):
                with contextlib.suppress(Exception):
                    configure(sample_interval_s=self.config.sample_interval_s)
            try:
                meter.open(now_s)
            except Exception as exc:  # measurement never crashes training
                self._fault(meter, f"open() failed: {exc}")
        self._sampler = Sampler(self.selection.meters, clock=self._clock)
        self._sampler.start()
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
        for meter in self.selection.meters if self.selection else ():
            try:
                meter.close()
            except Exception as exc:
                logger.debug("closing meter %s failed: %s", meter.name, exc)
        self._end = end
        self.total = end - self._start
        return self.total

    def __enter__(self) -> EnergyTracker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading -----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Every selected device's cumulative counter now. Never raises for a meter failure."""
        if self.selection is None:
            raise TrackerStateError("snapshot() called before start()")
        now_s = self._clock()
        devices: list[DeviceCounter] = []
        with self._lock:
            for meter in self.selection.meters:
                wanted = self.selection.components_of(meter)
                try:
                    readings = [d for d in meter.read(now_s) if d.component in wanted]
                except Exception as exc:  # measurement never crashes training
                    self._fault(meter, f"read() failed: {exc}")
                    readings = [d for d in self._last_good.values() if d.meter == meter.name]
                for reading in readings:
                    self._last_good[reading.device_id] = reading
                devices.extend(readings)
        return Snapshot(now_s, tuple(devices), host=self.host)

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
        return measurement

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
        """The ``green.meters`` tag: which meter measured each component, e.g. ``cpu:rapl,ram:estimate``."""
        if self.selection is None:
            return ""
        provenance = {}
        for device in self._last_good.values():
            provenance.setdefault(device.component, []).append(device.provenance)
        parts = []
        for component in COMPONENTS:
            meter = self.selection.assignments.get(component)
            if meter is None:
                continue
            prov = weakest_provenance(provenance.get(component, [])) if component in provenance else "estimate"
            parts.append(f"{component}:{meter.label(component, prov)}")
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


def _split_meters(meters: str | Sequence[MeterSpec] | None) -> tuple[list[Meter], list[str]]:
    if meters is None:
        return [], []
    if isinstance(meters, str):
        return [], [m.strip() for m in meters.split(",") if m.strip()]
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
