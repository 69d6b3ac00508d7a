"""The fallback meter: CPU and RAM energy under CodeCarbon's own power model.

Always available, always labelled ``estimate``. It needs no thread: the operating system's
cumulative CPU times are read at window boundaries, like a counter. The model — TDP, load
curves, RAM power — is CodeCarbon's, resolved through CodeCarbon once per machine and cached
(:mod:`mlflow_green.measure.power_model`); every reading names the CodeCarbon version and rule.

Over an interval of ``Δt`` seconds (between two reads)::

    scope="machine":  cpu_j = TDP × machine_curve(busy / capacity) × Δt      (CodeCarbon, tracking_mode="machine")
                      ram_j = RAM_W × Δt
    scope="process":  cpu_j = TDP × process_curve(tree_cpu / capacity) × Δt  (CodeCarbon, tracking_mode="process")
                      ram_j = RAM_W × (tree_rss / installed RAM) × Δt

``busy`` and ``capacity`` are the machine's busy and total CPU seconds (under ``scope="process"``,
``capacity`` is the logical CPUs × ``Δt`` and the machine's times are not read), ``tree_cpu`` the user +
system seconds of this training's process tree (reaped children included), ``tree_rss`` its
resident memory (mean of the interval's two ends). With CodeCarbon 3.3 the machine curve is
``0.1 + 0.9 × load³`` and the process curve is linear (``TDP × tree_cpu / capacity``): a process
pays for its own CPU time whatever else runs, and a sleeping process pays next to nothing.

Example:
    >>> from collections import namedtuple
    >>> Times = namedtuple("Times", "user system idle")
    >>> ticks = iter([Times(0.0, 0.0, 20.0), Times(10.0, 0.0, 30.0)])  # 2 CPUs, 10 s, half busy
    >>> meter = EstimateMeter(cpu_times=lambda: next(ticks), model=PowerModel.example())
    >>> meter.attribute(Attribution("machine"))
    >>> meter.open(0.0)
    >>> [(c.device_id, round(c.energy_j, 2), c.share) for c in meter.read(10.0)]
    [('cpu:0', 212.5, ''), ('ram:0', 100.0, '')]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mlflow_green.errors import ConfigError, MeterError
from mlflow_green.measure import procfs
from mlflow_green.measure.attribution import Attribution, Usage, UsageProbe
from mlflow_green.measure.device_energy import build
from mlflow_green.measure.meters.base import PROCESS_SHARES, Availability, ProcessShareMeter
from mlflow_green.measure.model_cache import cache_dir, cached_model, load_power_model
from mlflow_green.measure.power_model import PowerModel
from mlflow_green.measure.readings import Component, DeviceCounter
from mlflow_green.measure.shares import UsageDelta

logger = logging.getLogger(__name__)

BYTES_PER_GIB = 2**30
DEVICE_IDS: dict[Component, str] = {"cpu": "cpu:0", "ram": "ram:0"}
"""The device each component's energy is counted under."""
SHARES = PROCESS_SHARES
"""The share each component is apportioned by under ``scope="process"``."""

CpuTimes = Callable[[], Any]


class EstimateMeter(ProcessShareMeter):
    """CPU and RAM energy under CodeCarbon's power model, for the whole machine or this process tree.

    Args:
        cpu_times: The machine's cumulative CPU times (``procfs.cpu_times``, injectable).
        model: A resolved :class:`~mlflow_green.measure.power_model.PowerModel`; None loads this
            machine's from the cache (resolving it through CodeCarbon on first use).
        tdp_w: Override the TDP of all CPU packages together, in watts (like CodeCarbon's
            ``force_cpu_power``).
        ram_power_w: Override the RAM power, in watts (like CodeCarbon's ``force_ram_power``).

    Example:
        >>> meter = EstimateMeter(model=PowerModel.example(), tdp_w=65.0)
        >>> meter.is_available().reason.split(";")[0]
        'CPU: 65 W TDP (given), under CodeCarbon 3.3 load curves'
    """

    name = "estimate"
    priority = 0
    description = "CPU and RAM estimated under CodeCarbon's power model (TDP table, load curve, per-DIMM RAM)"

    def __init__(
        self,
        *,
        cpu_times: CpuTimes = procfs.cpu_times,
        model: PowerModel | None = None,
        tdp_w: float | None = None,
        ram_power_w: float | None = None,
    ) -> None:
        if tdp_w is not None and not tdp_w > 0:
            raise ConfigError(f"tdp_w must be > 0 watts, got {tdp_w!r}")
        if ram_power_w is not None and not ram_power_w >= 0:
            raise ConfigError(f"ram_power_w must be >= 0 watts, got {ram_power_w!r}")
        self._cpu_times = cpu_times
        self._given = model
        self._tdp_w = tdp_w
        self._ram_power_w = ram_power_w
        self._model: PowerModel | None = None
        self.model_source = ""
        self.attribution = Attribution("machine")
        self._probe: UsageProbe | None = None
        self._capture: Callable[[], tuple[float, int] | None] | None = None  # the probe's, while open
        self._last: tuple[float, Usage] | None = None
        self._energy_j: dict[Component, float] = {"cpu": 0.0, "ram": 0.0}
        self._described: tuple[PowerModel, dict[Component, dict[str, str]]] | None = None

    # -- the model -------------------------------------------------------------------------

    def _overridden(self, model: PowerModel) -> PowerModel:
        if self._tdp_w is not None:
            model = model.with_tdp(self._tdp_w)
        if self._ram_power_w is not None:
            model = model.with_ram_power(self._ram_power_w)
        return model

    def model(self) -> PowerModel:
        """The model in force, resolved through CodeCarbon if it is not cached yet (may take ~0.5 s once)."""
        if self._model is None:
            if self._given is not None:
                model, self.model_source = self._given, "given"
            else:
                model, self.model_source = load_power_model()
            self._model = self._overridden(model)
        return self._model

    def model_description(self) -> dict[str, Any] | None:
        """The model in force and where it came from (for report.json), or None before it is resolved."""
        if self._model is None:
            return None
        return {**self._model.describe(), "resolved_from": self.model_source, "scope": self.attribution.scope}

    def is_available(self) -> Availability:
        try:
            model = self._model or (self._overridden(self._given) if self._given else None)
            if model is None:
                cached = cached_model()
                model = self._overridden(cached) if cached is not None else None
            if model is None:  # resolving needs CodeCarbon's import: leave it to open()
                reason = (
                    "CPU and RAM under CodeCarbon's power model (resolved through CodeCarbon when first "
                    f"opened, then cached in {cache_dir()})"
                )
            else:
                curve = f"CodeCarbon {model.codecarbon_version}" if model.codecarbon_version else "fallback"
                reason = f"CPU: {model.cpu_source}, under {curve} load curves; RAM: {model.ram_source}"
        except Exception as exc:  # never raise; open() resolves the model or falls back
            reason = f"CPU and RAM estimated ({exc!r} while reading the model)"
        return Availability.yes(reason, {"cpu", "ram"}, "estimate")

    # -- Meter API ---------------------------------------------------------------------------

    def _usage(self) -> Usage:
        assert self._probe is not None
        try:
            return self._probe.read()
        except Exception as exc:
            raise MeterError(f"estimate: cannot read CPU times ({exc!r})") from exc

    def open(self, now_s: float) -> None:
        self.model()
        processes = self.attribution.processes if self.process_scope else _NoProcesses()
        # under scope="process" the share is of the capacity, CPUs × Δt: the machine's times are not read
        self._probe = UsageProbe(processes, self._cpu_times, memory=self.process_scope, machine=not self.process_scope)
        self._capture = self._probe.capturer()
        self._last = (now_s, self._usage())
        self._energy_j = {"cpu": 0.0, "ram": 0.0}
        self._described = None  # the attribution may have changed since the last open

    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        if self._last is None:
            raise MeterError("estimate: read() before open()")
        return self._advance(now_s, self._usage())

    def capture(self, now_s: float) -> tuple[float, int] | None:
        """The process tree's CPU seconds and resident bytes now, when that is cheap (this process alone)."""
        capture = self._capture
        return capture() if capture is not None and self._last is not None else None

    def capturer(self) -> Callable[[], tuple[float, int] | None] | None:
        """The process tree's own capture (the scanner's: None once it is released), while the meter is open."""
        return self._capture if self._last is not None else None

    def read_captured(self, now_s: float, raw: object) -> tuple[DeviceCounter, ...]:
        if self._last is None or self._probe is None or not isinstance(raw, tuple):
            raise MeterError("estimate: read_captured() without an open meter's capture")
        return self._advance(now_s, self._probe.usage_of(raw))

    def preview_captured(
        self, captures: Sequence[tuple[float, object]], components: Iterable[Component], state: object = None,
    ) -> tuple[list[dict[str, float]], object] | None:
        if self._last is None or not self.process_scope:
            return None
        model = self._model if self._model is not None else self.model()
        if isinstance(state, tuple):
            last_s, cpu_s, rss_bytes, cpu_j, ram_j = state
        else:
            last_s, last = self._last
            cpu_s, rss_bytes, cpu_j, ram_j = last.tree_cpu_s, last.tree_rss_bytes, self._energy_j["cpu"], self._energy_j["ram"]
        cpu_id = DEVICE_IDS["cpu"] if "cpu" in components else None
        ram_id = DEVICE_IDS["ram"] if "ram" in components else None
        counters = []
        for now_s, raw in captures:  # what _advance does with each, on copies
            if not isinstance(raw, tuple):
                return None
            now_cpu_s, now_rss_bytes = float(raw[0]), int(raw[1])
            duration_s = max(now_s - last_s, 0.0)
            cpu_w, ram_w = _process_w(model, duration_s, now_cpu_s - cpu_s, (rss_bytes + now_rss_bytes) / 2.0)
            cpu_j += cpu_w * duration_s
            ram_j += ram_w * duration_s
            if now_s >= last_s:
                last_s, cpu_s, rss_bytes = now_s, now_cpu_s, now_rss_bytes
            after = {}
            if cpu_id:
                after[cpu_id] = cpu_j
            if ram_id:
                after[ram_id] = ram_j
            counters.append(after)
        return counters, (last_s, cpu_s, rss_bytes, cpu_j, ram_j)

    def _advance(self, now_s: float, usage: Usage) -> tuple[DeviceCounter, ...]:
        """The energy counters at ``now_s``, the usage then being ``usage`` (integrated since the last)."""
        assert self._last is not None
        model = self._model if self._model is not None else self.model()
        last_s, last = self._last
        duration_s = max(now_s - last_s, 0.0)
        if self.process_scope:
            cpu_w, ram_w = _process_w(model, duration_s, usage.tree_cpu_s - last.tree_cpu_s,
                                      (last.tree_rss_bytes + usage.tree_rss_bytes) / 2.0)
        else:
            cpu_w = model.cpu_power_w(UsageDelta.between(last, usage, duration_s).machine_load)
            ram_w = model.ram_power_w
        self._energy_j["cpu"] += cpu_w * duration_s
        self._energy_j["ram"] += ram_w * duration_s
        if now_s >= last_s:  # a clock that went back is ignored, not subtracted
            self._last = (now_s, usage)
        described = self._described
        if described is None or described[0] is not model:
            described = self._described = (model, self._descriptions(model))
        cpu, ram = described[1]["cpu"], described[1]["ram"]
        return (build(DeviceCounter, component="cpu", energy_j=self._energy_j["cpu"], **cpu),
                build(DeviceCounter, component="ram", energy_j=self._energy_j["ram"], **ram))

    def _descriptions(self, model: PowerModel) -> dict[Component, dict[str, str]]:
        """What each reading says besides its energy (the same at every read of one model)."""
        scope = "process" if self.process_scope else "machine"
        labels = {"cpu": model.cpu_model, "ram": f"RAM {model.ram_total_bytes / BYTES_PER_GIB:.1f} GiB"}
        return {
            component: {
                "device_id": DEVICE_IDS[component], "provenance": "estimate", "meter": self.name, "label": labels[component],
                "note": self._note(model, component), "scope": scope, "share": self.share_of(component),
            }
            for component in ("cpu", "ram")
        }

    def _note(self, model: PowerModel, component: Component) -> str:
        """Which CodeCarbon version and rule produced the number (shown in report.json)."""
        if component == "ram":
            how = "× this process tree's share of RAM (rss)" if self.process_scope else "for the whole machine"
            return f"estimate: {model.ram_source}, {how}"
        curve = "process" if self.process_scope else "machine"
        return f"estimate: {model.cpu_source}; CodeCarbon's {curve}-tracking load curve"

    def close(self) -> None:
        self._last = None
        self._probe = None
        self._capture = None


def _process_w(model: PowerModel, duration_s: float, tree_cpu_s: float, rss_bytes: float) -> tuple[float, float]:
    """(CPU watts, RAM watts) of a process tree that used ``tree_cpu_s`` CPU seconds over ``duration_s``
    (a negative jitter counts 0) with ``rss_bytes`` resident on average: its share of the capacity on the
    process curve, its share of the machine's RAM."""
    # share_of_capacity() and memory_share() written out: an epoch's end previews its readings with this on
    # the training thread, where each call costs microseconds (tests/measure check it against them)
    capacity_s = model.logical_cpus * duration_s
    share = max(tree_cpu_s, 0.0) / capacity_s if capacity_s > 0 else 0.0
    total_bytes = model.ram_total_bytes
    memory = rss_bytes / total_bytes if total_bytes > 0 else 0.0
    return (model.cpu_power_w(0.0 if share != share else min(share, 1.0), process=True),
            model.ram_power_w * (0.0 if memory != memory else min(max(memory, 0.0), 1.0)))


class _NoProcesses:
    """Machine scope needs no process usage."""

    def cpu_seconds(self) -> float:
        return 0.0

    def rss_bytes(self) -> int:
        return 0
