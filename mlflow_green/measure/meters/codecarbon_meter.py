"""CodeCarbon's energy measurement as a meter, for users who want CodeCarbon's numbers.

Its priority (-10) is below every other built-in, the always-available estimate (0) included,
so automatic selection never picks it (it would also cost ~2 s at start): it is used only when
named (``meters=["codecarbon"]``), where the user's order is the priority.

It runs CodeCarbon's ``OfflineEmissionsTracker`` configured never to touch the network or the
disk: no output methods, no lock file, no API, a fixed country only to satisfy CodeCarbon
(emissions are computed by mlflow-green's own carbon module from the energy, never taken from
CodeCarbon).

Under ``scope="process"`` (the default) CodeCarbon runs in its own ``tracking_mode="process"``:
CPU billed by this process's and its children's CPU time, RAM by CodeCarbon's per-DIMM rule
applied to their resident memory; those readings say ``scope="process"`` with shares
``cpu-time`` / ``rss``. CodeCarbon bills GPUs whole in either mode (``scope="machine"``).

CodeCarbon's own periodic measurement timer is paused after start; measurements are taken
from this meter's ``poll()`` (the tracker's background thread) and at every ``read()``,
serialised by a lock so no interval is counted twice. CodeCarbon's 1 Hz power monitor keeps
running, as CodeCarbon needs it for devices without energy counters.

Example:
    >>> meter = CodeCarbonMeter()
    >>> meter.is_available().available
    True
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from mlflow_green import codecarbon_data
from mlflow_green.errors import ConfigError, MeterError
from mlflow_green.measure import hardware
from mlflow_green.measure.attribution import Attribution
from mlflow_green.measure.meters.base import PROCESS_SHARES, Availability, ProcessShareMeter
from mlflow_green.measure.readings import Component, DeviceCounter, Provenance
from mlflow_green.units import kwh_to_joules

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_INTERVAL_S = 1.0
MIN_SAMPLE_INTERVAL_S = 1.0
"""CodeCarbon samples power once a second; measuring more often than that adds only cost."""

_COUNTER_CPU_MODES = frozenset({"intel_rapl", "intel_power_gadget", "windows_emi"})
"""What CodeCarbon's process mode apportions by (GPUs stay whole)."""
_ENERGY_ATTRS: tuple[tuple[Component, str], ...] = (
    ("cpu", "_total_cpu_energy"),
    ("ram", "_total_ram_energy"),
    ("gpu", "_total_gpu_energy"),
)


class CodeCarbonMeter(ProcessShareMeter):
    """CPU, RAM and GPU energy as CodeCarbon's offline tracker measures them.

    Args:
        sample_interval_s: Seconds between CodeCarbon measurements (at least 1 s).
        country_iso_code: Given to CodeCarbon only because its offline tracker requires one;
            it does not affect energy.

    Example:
        >>> meter = CodeCarbonMeter(sample_interval_s=5.0)
        >>> meter.name, meter.priority
        ('codecarbon', -10)
    """

    name = "codecarbon"
    priority = -10  # below the estimate (0): only used when named in meters=[...]
    description = "CodeCarbon's offline tracker (RAPL or TDP × load for CPU, NVML for GPU, a RAM model)"

    def __init__(
        self,
        *,
        sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
        country_iso_code: str = "USA",
    ) -> None:
        self._country_iso_code = country_iso_code
        self._lock = threading.Lock()
        self._tracker: Any = None
        self._components: dict[Component, Provenance] = {}
        self.attribution = Attribution("machine")
        self.sample_interval_s = DEFAULT_SAMPLE_INTERVAL_S
        self.configure(sample_interval_s=sample_interval_s)

    def configure(self, *, sample_interval_s: float) -> None:
        """Set the measurement interval (clamped to at least 1 s, CodeCarbon's sampling rate).

        Raises:
            ConfigError: if the interval is not a positive number of seconds.
        """
        if not sample_interval_s > 0:
            raise ConfigError(f"sample_interval_s must be > 0 seconds, got {sample_interval_s!r}")
        self.sample_interval_s = max(float(sample_interval_s), MIN_SAMPLE_INTERVAL_S)
        self.poll_interval_s = self.sample_interval_s

    def is_available(self) -> Availability:
        version = codecarbon_data.version()
        if version is None:
            return Availability.no("CodeCarbon: the codecarbon package is not installed — pip install codecarbon")
        components: set[Component] = {"cpu", "ram"}
        if hardware.gpu_names():
            components.add("gpu")
        return Availability.yes(
            f"CodeCarbon {version} offline tracker (used only when named in meters=)", components, "estimate"
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self, now_s: float) -> None:
        try:
            from codecarbon import OfflineEmissionsTracker  # lazy: slow import, core dependency

            # CodeCarbon logs at INFO before it applies log_level; quieten it first.
            logging.getLogger("codecarbon").setLevel(logging.ERROR)
            tracker = OfflineEmissionsTracker(
                country_iso_code=self._country_iso_code,
                measure_power_secs=self.sample_interval_s,
                output_methods=[],  # no CSV, API, logger, Prometheus or Logfire output
                emissions_endpoint=None,
                api_call_interval=-1,
                allow_multiple_runs=True,  # no lock file in /tmp, no signal handlers
                log_level="error",
                tracking_mode="process" if self.process_scope else "machine",
                pue=1.0,
                electricitymaps_api_token=None,
            )
            tracker.start()  # CodeCarbon swallows its own errors here; check it really started
            if getattr(tracker, "_start_time", None) is None:
                raise MeterError("CodeCarbon: the offline tracker did not start (see the codecarbon log)")
            scheduler = getattr(tracker, "_scheduler", None)
            if scheduler is not None:
                scheduler.stop()  # measurements come from poll()/read(), under our lock
            components = self._detect_components(tracker)
        except MeterError:
            raise
        except Exception as exc:
            raise MeterError(f"CodeCarbon: cannot start the offline tracker ({exc!r})") from exc
        with self._lock:
            self._tracker = tracker
            self._components = components

    @staticmethod
    def _detect_components(tracker: Any) -> dict[Component, Provenance]:
        """Which components CodeCarbon measures here, and how (counter or estimate)."""
        components: dict[Component, Provenance] = {}
        for device in getattr(tracker, "_hardware", []):
            kind = type(device).__name__
            if kind == "RAM":
                components["ram"] = "estimate"
            elif kind == "CPU":
                components["cpu"] = "counter" if getattr(device, "_mode", "") in _COUNTER_CPU_MODES else "estimate"
            elif kind == "GPU":
                components["gpu"] = "counter"
            elif kind in ("AppleSiliconChip", "Raspberry"):
                part: Component = "gpu" if getattr(device, "chip_part", "") == "GPU" else "cpu"
                components[part] = "sampled"
        return components

    def _measure(self) -> None:
        """Make CodeCarbon measure now (lock held)."""
        if self._tracker is None:
            raise MeterError("CodeCarbon: read() before open()")
        try:
            self._tracker._measure_power_and_energy()
        except Exception as exc:
            raise MeterError(f"CodeCarbon: measurement failed ({exc!r})") from exc

    def poll(self, now_s: float) -> None:
        """Take one CodeCarbon measurement (CodeCarbon integrates power over the interval)."""
        with self._lock:
            if self._tracker is None:
                return
            try:
                self._measure()
            except MeterError as exc:
                logger.warning("%s", exc)

    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        with self._lock:
            self._measure()
            try:
                totals_j = {
                    component: kwh_to_joules(float(getattr(self._tracker, attr).kWh))
                    for component, attr in _ENERGY_ATTRS
                    if component in self._components
                }
            except Exception as exc:
                raise MeterError(f"CodeCarbon: cannot read its energy totals ({exc!r})") from exc
            return tuple(
                DeviceCounter(
                    device_id=f"{component}:codecarbon",
                    component=component,
                    energy_j=energy_j,
                    provenance=self._components[component],
                    meter=self.name,
                    label=self._label(component),
                    scope="process" if self.process_scope and component in PROCESS_SHARES else "machine",
                    share=self.share_of(component),
                )
                for component, energy_j in totals_j.items()
            )

    def _label(self, component: Component) -> str:
        conf = getattr(self._tracker, "_conf", None) or {}
        if component == "cpu":
            return str(conf.get("cpu_model") or hardware.cpu_model())
        if component == "gpu":
            return str(conf.get("gpu_model") or "GPU")
        return "RAM"

    def close(self) -> None:
        with self._lock:
            tracker, self._tracker = self._tracker, None
        if tracker is None:
            return
        try:
            tracker.stop()
        except Exception as exc:  # close must not raise
            logger.debug("CodeCarbon: stop failed: %s", exc)
