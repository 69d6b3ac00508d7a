"""The fallback meter: CPU and RAM energy estimated from TDP, CPU time and installed RAM.

Always available, always labelled ``estimate``. It needs no thread: the operating system's
cumulative CPU times are read at window boundaries, like a counter.

Model, over a window of ``Δt`` seconds::

    cpu_energy_j = TDP_W × (IDLE_FRACTION × Δt + (1 − IDLE_FRACTION) × Δbusy_s / n_logical_cpus)
    ram_energy_j = installed_RAM_GiB × RAM_W_PER_GB × Δt

``Δbusy_s`` is the system-wide busy CPU time from ``psutil.cpu_times()`` (user, nice, system,
irq, softirq — i.e. everything except idle, iowait, steal and the guest time Linux already
counts in user), so ``Δbusy_s / n_logical_cpus`` is the utilised share of ``Δt``. TDP comes
from CodeCarbon's bundled table (:func:`mlflow_green.measure.hardware.cpu_tdp_w`), times the number
of sockets.

Example:
    >>> from collections import namedtuple
    >>> Times = namedtuple("Times", "user system idle")
    >>> busy = iter([Times(0.0, 0.0, 0.0), Times(2.0, 0.0, 0.0)])
    >>> meter = EstimateMeter(cpu_times=lambda: next(busy), cpu_count=2, tdp_w=100.0, ram_bytes=8 * 2**30)
    >>> meter.open(0.0)
    >>> [(c.device_id, c.energy_j) for c in meter.read(10.0)]
    [('cpu:0', 190.0), ('ram:0', 30.0)]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import psutil

from mlflow_green.errors import ConfigError, MeterError
from mlflow_green.measure import hardware
from mlflow_green.measure.meters.base import Availability, Meter
from mlflow_green.measure.readings import DeviceCounter

logger = logging.getLogger(__name__)

IDLE_FRACTION = 0.1
"""Fraction of TDP a CPU package draws when idle; the rest scales with utilisation."""

RAM_W_PER_GB = 0.375
"""Watts per GB of installed RAM: CodeCarbon's long-standing 3 W per 8 GB. GB here is GiB (2**30 bytes)."""

BYTES_PER_GIB = 2**30

_BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "interrupt", "dpc")

CpuTimes = Callable[[], Any]


def busy_cpu_s(times: Any) -> float:
    """System-wide busy CPU seconds from a ``psutil.cpu_times()`` result (all CPUs summed).

    Example:
        >>> from collections import namedtuple
        >>> busy_cpu_s(namedtuple("T", "user system idle iowait")(3.0, 1.0, 50.0, 2.0))
        4.0
    """
    return float(sum(getattr(times, name, 0.0) for name in _BUSY_FIELDS))


class EstimateMeter(Meter):
    """CPU and RAM energy estimated from TDP, system-wide CPU utilisation and installed RAM.

    Args:
        cpu_times: Returns cumulative system-wide CPU times (``psutil.cpu_times``, injectable).
        cpu_count: Logical CPUs; None asks psutil.
        tdp_w: TDP of all the machine's CPU packages together, in watts; None looks the model
            up in CodeCarbon's table and multiplies by the number of sockets.
        ram_bytes: Installed RAM; None asks psutil.

    Example:
        >>> meter = EstimateMeter(tdp_w=65.0, ram_bytes=16 * 2**30)
        >>> meter.is_available().reason
        'CPU: TDP 65 W (given), 10% of it at idle, the rest in proportion to utilisation; RAM: 16 GiB × 0.375 W/GiB'
    """

    name = "estimate"
    priority = 0
    description = "CPU and RAM estimated from TDP × utilisation and installed RAM (CodeCarbon's figures)"

    def __init__(
        self,
        cpu_times: CpuTimes = psutil.cpu_times,
        cpu_count: int | None = None,
        tdp_w: float | None = None,
        ram_bytes: int | None = None,
    ) -> None:
        if tdp_w is not None and not tdp_w > 0:
            raise ConfigError(f"tdp_w must be > 0 watts, got {tdp_w!r}")
        if ram_bytes is not None and ram_bytes < 0:
            raise ConfigError(f"ram_bytes must be >= 0, got {ram_bytes!r}")
        if cpu_count is not None and cpu_count < 1:
            raise ConfigError(f"cpu_count must be >= 1, got {cpu_count!r}")
        self._cpu_times = cpu_times
        self._cpu_count = cpu_count
        self._tdp_w = tdp_w
        self._ram_bytes = ram_bytes
        self._opened_at_s: float | None = None
        self._busy0_s = 0.0
        self._cpu_j = 0.0
        self._model: tuple[float, str, int, float] | None = None

    # -- the model's inputs ------------------------------------------------------------------

    def _resolve(self) -> tuple[float, str, int, float]:
        """(machine TDP W, where it came from, logical CPUs, RAM GiB), resolved once."""
        if self._model is None:
            if self._tdp_w is not None:
                tdp_w, note = self._tdp_w, f"TDP {self._tdp_w:g} W (given)"
            else:
                tdp_w, note = hardware.cpu_tdp_w()
                sockets = hardware.cpu_sockets()
                if sockets > 1:
                    tdp_w, note = tdp_w * sockets, f"{note} × {sockets} sockets"
            cpu_count = self._cpu_count or psutil.cpu_count(logical=True) or os.cpu_count() or 1
            ram_bytes = hardware.total_ram_bytes() if self._ram_bytes is None else self._ram_bytes
            self._model = (float(tdp_w), note, int(cpu_count), ram_bytes / BYTES_PER_GIB)
        return self._model

    def is_available(self) -> Availability:
        try:
            _, note, _, ram_gib = self._resolve()
            reason = (
                f"CPU: {note}, {IDLE_FRACTION:.0%} of it at idle, the rest in proportion to utilisation; "
                f"RAM: {ram_gib:.0f} GiB × {RAM_W_PER_GB:g} W/GiB"
            )
        except Exception as exc:  # never raise; the estimate still works with defaults
            reason = f"CPU and RAM estimated ({exc!r} while reading the hardware)"
        return Availability.yes(reason, {"cpu", "ram"}, "estimate")

    # -- Meter API ---------------------------------------------------------------------------

    def _busy_s(self) -> float:
        try:
            return busy_cpu_s(self._cpu_times())
        except Exception as exc:
            raise MeterError(f"estimate: cannot read CPU times ({exc!r})") from exc

    def open(self, now_s: float) -> None:
        self._resolve()
        self._busy0_s = self._busy_s()
        self._cpu_j = 0.0
        self._opened_at_s = now_s

    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        if self._opened_at_s is None:
            raise MeterError("estimate: read() before open()")
        tdp_w, _, cpu_count, ram_gib = self._resolve()
        elapsed_s = max(now_s - self._opened_at_s, 0.0)
        utilised_s = min(max((self._busy_s() - self._busy0_s) / cpu_count, 0.0), elapsed_s)
        cpu_j = tdp_w * (IDLE_FRACTION * elapsed_s + (1.0 - IDLE_FRACTION) * utilised_s)
        self._cpu_j = max(self._cpu_j, cpu_j)  # cumulative: never let clock jitter lower it
        ram_j = ram_gib * RAM_W_PER_GB * elapsed_s
        return (
            DeviceCounter("cpu:0", "cpu", self._cpu_j, "estimate", self.name, label=hardware.cpu_model()),
            DeviceCounter("ram:0", "ram", ram_j, "estimate", self.name, label=f"RAM {ram_gib:.1f} GiB"),
        )

    def close(self) -> None:
        self._opened_at_s = None
