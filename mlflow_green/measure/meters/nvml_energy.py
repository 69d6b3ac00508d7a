"""The energy of one physical GPU since the meter opened, surviving NVML faults.

Three ways, in order of preference, chosen per GPU when the meter opens:

- ``counter``: ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since driver load, Volta and
  later), read at window boundaries.
- ``sampled``: ``nvmlDeviceGetPowerUsage`` sampled from the tracker's thread, trapezoidal rule.
- ``estimate``: utilisation × enforced power limit (``nvmlDeviceGetUtilizationRates`` ×
  ``nvmlDeviceGetEnforcedPowerLimit``), sampled; at the power limit, an upper bound, when the
  utilisation cannot be read either.

Faults are per GPU. A query that fails marks the GPU *failing*: until it answers, its energy
is extrapolated provisionally at its recent power (an ``estimate``); each later read retries it.
When the counter answers again, its value covers the gap exactly, so a transient error costs no
energy. A counter that went backwards was reset (driver reload): energy counts on from its new
value, and the unseen part of the gap is estimated at the recent power. ``estimated_j`` holds
the part of the energy that is not measured, so windows containing it are labelled ``estimate``.

The counter's update period (20–100 ms on real GPUs) is learnt as Zeus does, by reading it in a
tight loop until it has changed a few times — here from the sampler thread, never blocking start.

Example:
    >>> from mlflow_green.testing import FakeGPU, FakeNVML, ManualClock
    >>> clock = ManualClock()
    >>> nvml = FakeNVML([FakeGPU("GPU-a", power_w=100.0)], clock=clock)
    >>> nvml.nvmlInit()
    >>> gpu = GpuEnergy(nvml, nvml.nvmlDeviceGetHandleByIndex(0), "GPU-a", 0.0)
    >>> clock.set(2.0); gpu.update(2.0)
    >>> gpu.mode, gpu.measured_j, gpu.estimated_j
    ('counter', 200.0, 0.0)
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from mlflow_green.measure.meters.nvml_inventory import describe_error

logger = logging.getLogger(__name__)

Mode = Literal["counter", "sampled", "estimate", "none"]

PROBE_INTERVAL_S = 0.005
"""How often the counter is read while its update period is being learnt."""
PROBE_CHANGES = 8
"""Counter changes to observe (7 intervals: the mean of the typical ones is the period)."""
PROBE_BUDGET_S = 2.0
"""Give up learning the period after this long (a counter that hardly moves)."""
RETRY_INTERVAL_S = 1.0
"""A failing GPU is retried by the sampler thread at most this often (every read retries it)."""


class GpuEnergy:
    """Cumulative energy of one physical GPU since ``opened_s``, with provenance and faults.

    Args:
        nvml: The pynvml-compatible module.
        handle: The GPU's NVML handle.
        uuid: Its UUID, for messages.
        now_s: When the meter opened.

    Attributes:
        mode: ``counter``, ``sampled``, ``estimate`` or ``none`` (nothing can be read).
        measured_j: Energy committed so far (joules since open), including estimated parts.
        estimated_j: The part of ``measured_j`` that was estimated, not measured.
        failing: Why the GPU is not answering now ("" when it is).
        update_period_s: The counter's learnt update period (None until learnt).
        events: What happened to it (failures, recoveries, resets), for report.json.
        faults: The failures and resets among them, for the tracker's fault list.
    """

    def __init__(self, nvml: Any, handle: Any, uuid: str, now_s: float) -> None:
        self._nvml = nvml
        self.handle = handle
        self.uuid = uuid
        self.opened_s = now_s
        self.measured_j = 0.0
        self.estimated_j = 0.0
        self.failing = ""
        self.failing_since_s: float | None = None
        self.events: list[str] = []
        self.faults: list[str] = []
        self.update_period_s: float | None = None
        self.model = ""
        self._last_raw_mj = 0
        self._last_ok_s = now_s
        self._last_try_s = now_s
        self._power_w: float | None = None  # the latest sample, or the recent mean power
        self._limit_w: float | None = None
        self._probe: list[float] = []
        self._probe_raw: int | None = None
        self._probing = False
        self.mode = self._choose_mode(now_s)

    # -- setup -----------------------------------------------------------------------------------
    def _choose_mode(self, now_s: float) -> Mode:
        try:
            self._last_raw_mj = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
            self._power_w = self._read_power()
            self._probing = True
            self._probe_raw = self._last_raw_mj
            return "counter"
        except Exception:
            pass
        try:
            self._power_w = self._read_power(strict=True)
            return "sampled"
        except Exception:
            pass
        try:
            self._limit_w = int(self._nvml.nvmlDeviceGetEnforcedPowerLimit(self.handle)) / 1000.0
        except Exception:
            return "none"
        self._power_w = self._estimated_power_w()
        return "estimate"

    def _read_power(self, *, strict: bool = False) -> float | None:
        try:
            return int(self._nvml.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0
        except Exception:
            if strict:
                raise
            return None

    def _estimated_power_w(self) -> float:
        """Utilisation × enforced power limit; the limit itself when utilisation is unreadable."""
        assert self._limit_w is not None
        try:
            utilisation = float(self._nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
        except Exception:
            self.model = f"enforced power limit {self._limit_w:.0f} W (utilisation unreadable: an upper bound)"
            return self._limit_w
        self.model = f"utilisation × enforced power limit ({self._limit_w:.0f} W)"
        return min(max(utilisation, 0.0), 100.0) / 100.0 * self._limit_w

    @property
    def needs_sampling(self) -> bool:
        """True when energy comes from power samples (sampled or estimated), i.e. needs the thread."""
        return self.mode in ("sampled", "estimate")

    @property
    def probing(self) -> bool:
        """True while the counter's update period is being learnt."""
        return self._probing

    @property
    def provenance(self) -> Literal["counter", "sampled", "estimate"]:
        """How this GPU's energy is obtained right now (``estimate`` while it is failing)."""
        if self.failing or self.mode in ("estimate", "none"):
            return "estimate"
        return self.mode  # type: ignore[return-value]

    # -- reading ---------------------------------------------------------------------------------
    def update(self, now_s: float, *, from_thread: bool = False) -> None:
        """Read the counter (or take a power sample) at ``now_s``; on failure, mark the GPU failing."""
        if self.mode == "none" or now_s < self._last_ok_s:
            return
        if self.failing and from_thread and now_s - self._last_try_s < RETRY_INTERVAL_S:
            return
        self._last_try_s = now_s
        try:
            if self.mode == "counter":
                self._count(now_s, int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)))
            elif self.mode == "sampled":
                self._integrate(now_s, int(self._nvml.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0)
            else:
                self._integrate(now_s, self._estimated_power_w())
        except Exception as exc:  # NVMLError, or anything a broken device throws
            self._fail(now_s, exc)

    def _count(self, now_s: float, raw_mj: int) -> None:
        gap_s = now_s - self._last_ok_s
        if raw_mj >= self._last_raw_mj:
            delta_j = (raw_mj - self._last_raw_mj) / 1000.0
            guessed_j = 0.0
        else:  # the counter restarted (driver reload): raw_mj is what it counted since
            since_reset_j = raw_mj / 1000.0
            expected_j = (self._power_w or 0.0) * gap_s
            delta_j = max(expected_j, since_reset_j)
            guessed_j = delta_j - since_reset_j
            self._event(
                f"NVML: GPU {self.uuid}: energy counter reset between {self._last_ok_s - self.opened_s:.1f} s and "
                f"{now_s - self.opened_s:.1f} s; {guessed_j:.1f} J of the gap estimated at {self._power_w or 0.0:.1f} W",
                fault=True,
            )
        self._recover(now_s)
        if gap_s > 0 and delta_j > 0:
            self._power_w = delta_j / gap_s
        self.measured_j += delta_j
        self.estimated_j += guessed_j
        self._last_raw_mj = raw_mj
        self._last_ok_s = now_s

    def _integrate(self, now_s: float, power_w: float) -> None:
        gap_s = now_s - self._last_ok_s
        energy_j = 0.5 * (power_w + (self._power_w if self._power_w is not None else power_w)) * gap_s
        self.measured_j += energy_j
        if self.failing or self.mode == "estimate":
            self.estimated_j += energy_j  # bridged across a gap in the samples, or modelled
        self._recover(now_s)
        self._power_w = power_w
        self._last_ok_s = now_s

    def _fail(self, now_s: float, exc: BaseException) -> None:
        if not self.failing:
            self.failing_since_s = now_s
            self.failing = (
                f"NVML: GPU {self.uuid} not answering since {now_s - self.opened_s:.1f} s ({describe_error(exc)}); "
                f"extrapolated at {self._power_w or 0.0:.1f} W until it answers again"
            )
            self._event(self.failing, fault=True)
            logger.warning(self.failing)

    def _recover(self, now_s: float) -> None:
        if self.failing:
            self._event(
                f"NVML: GPU {self.uuid} answers again after {now_s - (self.failing_since_s or now_s):.1f} s"
                + ("; its counter covers the gap" if self.mode == "counter" else "; the gap is interpolated")
            )
            self.failing = ""
            self.failing_since_s = None

    def _event(self, text: str, *, fault: bool = False) -> None:
        self.events.append(text)
        if fault:
            self.faults.append(text)

    def provisional_j(self, now_s: float) -> float:
        """Energy since the last good reading, extrapolated while the GPU is failing (else 0)."""
        if not self.failing:
            return 0.0
        return (self._power_w or 0.0) * max(now_s - self._last_ok_s, 0.0)

    # -- update period -----------------------------------------------------------------------
    def probe(self, now_s: float) -> None:
        """One step of learning the counter's update period (called every few ms from the thread)."""
        if not self._probing:
            return
        try:
            raw = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except Exception:
            raw = self._probe_raw
        if raw != self._probe_raw:
            self._probe.append(now_s)
            self._probe_raw = raw
        intervals = [b - a for a, b in zip(self._probe, self._probe[1:])]
        if len(self._probe) >= PROBE_CHANGES or now_s - self.opened_s >= PROBE_BUDGET_S:
            self._probing = False
            if intervals:  # the mean of the typical intervals: robust to a missed tick, and to jitter
                import statistics  # lazy: it imports random, decimal and fractions (~2 ms at start)

                median_s = statistics.median(intervals)
                typical = [i for i in intervals if 0.5 * median_s <= i <= 1.5 * median_s]
                # known no better than the probe's own period: rounded to it (NVML's are round numbers)
                steps = max(round(statistics.fmean(typical) / PROBE_INTERVAL_S), 1)
                self.update_period_s = steps * PROBE_INTERVAL_S
