"""This training's share of a GPU other processes use too, from NVML's per-process utilisation.

``nvmlDeviceGetProcessUtilization`` returns the samples the driver buffered since a timestamp:
one per *busy* process every sampling period (1/6 s to 1 s by product); an idle process is
not sampled, or sampled at 0 %. So:

- samples buffered before the tracker opened are not this run's: they are skipped at open (and at
  the first read, if the query failed then);
- while someone is busy, the share is this tree's part of the newest samples' SM utilisation,
  kept between samples;
- when nobody is busy — the device's own utilisation (``nvmlDeviceGetUtilizationRates``) reads
  0 %, or where it cannot be read, no busy sample for :data:`IDLE_AFTER_S` or three sampling
  periods, whichever is longer — the idle power is split by the processes holding a context
  (seen on an H200: a stale 100 % share had billed two idle contexts' power to one);
- NVML refusing per-process utilisation for good (not supported, no permission) makes the share
  unknown: the caller bills the device whole and labels it ``shared-whole``.

Example:
    >>> from mlflow_green.testing import FakeGPU, FakeNVML, FakeProcess, ManualClock
    >>> clock = ManualClock()
    >>> nvml = FakeNVML([FakeGPU("GPU-a", processes=[FakeProcess(1, sm_util=30.0), FakeProcess(2, sm_util=90.0)])],
    ...                 clock=clock)
    >>> nvml.nvmlInit()
    >>> share = UtilisationShare(nvml.nvmlDeviceGetHandleByIndex(0))
    >>> share.skip_earlier_samples(nvml)
    >>> clock.set(1.0)
    >>> share.sample(nvml, {1}, 1.0)
    0.25
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlflow_green.measure.meters.nvml_inventory import (
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    describe_error,
    error_code,
)

IDLE_AFTER_S = 1.0
"""No busy per-process sample for this long (or three sampling periods, if longer), and the device's
own utilisation unreadable: every process on it is idle."""
MAX_PERIOD_S = 1.0
"""NVML's documented longest sampling period: a longer gap was a quiet spell, not the period."""
MIN_PERIOD_S = 0.02
"""Timestamps closer than this are one sampling, not two (processes sampled a little out of step)."""
REFUSED = (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_NO_PERMISSION)
"""Errors that do not pass: per-process utilisation is unavailable on this device for this run."""


@dataclass
class UtilisationShare:
    """What NVML's per-process samples say of one device's sharing (not thread-safe: the meter's lock).

    Attributes:
        handle: The device's NVML handle.
        supported: False once NVML refused per-process utilisation for good.
        last_util_us: The newest sample timestamp taken into account (NVML's clock, µs).
        last_busy_s: When a busy sample was last seen (monotonic), None while nobody is busy.
        sample_period_s: The driver's sampling period, as seen: the shortest gap between two
            sample timestamps (gaps under :data:`MIN_PERIOD_S` are processes sampled out of step).
        context_share: This tree's share of the processes holding a context, at the last listing.
        skip_pending: The skip at open failed (a transient error): it is done at the first sample.
        errors: Each distinct query error and how many times it happened (for report.json).
    """

    handle: Any
    supported: bool = True
    last_util_us: int = 0
    last_busy_s: float | None = None
    sample_period_s: float = 0.0
    context_share: float = 1.0
    skip_pending: bool = False
    errors: dict[str, int] = field(default_factory=dict)

    def skip_earlier_samples(self, nvml: Any) -> None:
        """At open: the samples NVML still buffers from before are not this run's."""
        try:
            stamps = [int(s.timeStamp) for s in nvml.nvmlDeviceGetProcessUtilization(self.handle, 0)]
        except Exception as exc:
            code = error_code(exc)
            self.skip_pending = code not in (NVML_ERROR_NOT_FOUND, *REFUSED)  # a glitch: again at the first sample
            self.supported = code not in REFUSED
            return
        self.skip_pending = False
        self._learn_period(set(stamps))  # the buffer shows the driver's period
        self.last_util_us = max(stamps, default=0)

    def sample(self, nvml: Any, ours: frozenset[int] | set[int], now_s: float) -> float | None:
        """This tree's share of the SM utilisation in the samples newer than the last ones taken.

        None when there is no new busy sample (or NVML does not answer); marks the share
        unsupported when NVML refuses per-process utilisation for good.
        """
        if not self.supported:
            return None
        if self.skip_pending:
            self.skip_earlier_samples(nvml)
            if self.skip_pending or not self.supported:
                return None
        try:
            samples = list(nvml.nvmlDeviceGetProcessUtilization(self.handle, self.last_util_us))
        except Exception as exc:
            code = error_code(exc)
            if code in REFUSED:
                self.supported = False
            elif code != NVML_ERROR_NOT_FOUND:
                text = f"per-process utilisation unreadable ({describe_error(exc)})"
                self.errors[text] = self.errors.get(text, 0) + 1
            return None
        latest: dict[int, tuple[int, float]] = {}
        for sample in samples:
            stamp = int(sample.timeStamp)
            if stamp >= latest.get(int(sample.pid), (-1, 0.0))[0]:
                latest[int(sample.pid)] = (stamp, float(sample.smUtil))
        self._learn_period({int(s.timeStamp) for s in samples})
        self.last_util_us = max([self.last_util_us, *(stamp for stamp, _ in latest.values())])
        total = sum(util for _, util in latest.values())
        if total <= 0:
            if latest:  # sampled, and nobody busy
                self.last_busy_s = None
            return None
        self.last_busy_s = now_s
        return sum(util for pid, (_, util) in latest.items() if pid in ours) / total

    def _learn_period(self, stamps: set[int]) -> None:
        """The shortest gap between consecutive sample timestamps, this batch's and the last one taken."""
        if not stamps:
            return
        ordered = sorted(stamps | ({self.last_util_us} if self.last_util_us else set()))
        gaps_s = [(b - a) / 1e6 for a, b in zip(ordered, ordered[1:]) if (b - a) / 1e6 >= MIN_PERIOD_S]
        if gaps_s:
            seen_s = min([*gaps_s, *([self.sample_period_s] if self.sample_period_s else [])])
            self.sample_period_s = min(seen_s, MAX_PERIOD_S)

    def idle(self, nvml: Any, now_s: float) -> bool:
        """True when no process on the device is busy now."""
        try:
            return int(nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu) == 0
        except Exception:  # not readable here: by the time since the last busy sample
            quiet_s = max(IDLE_AFTER_S, 3.0 * self.sample_period_s)
            return self.last_busy_s is None or now_s - self.last_busy_s >= quiet_s

    def error_events(self) -> list[str]:
        """Each distinct query error once, with how often it happened."""
        return [text if n == 1 else f"{text} ×{n}" for text, n in self.errors.items()]


__all__ = ["IDLE_AFTER_S", "UtilisationShare"]
