"""The fake hardware behind :class:`~mlflow_green.testing.FakeNVML`: GPUs, MIG slices, processes, faults.

Time is seconds since the :class:`~mlflow_green.testing.FakeNVML` was created (its clock's
value then is time zero). Power and utilisation are constants or functions of that time.

Example:
    >>> gpu = FakeGPU("GPU-aa", power_w=200.0, update_period_s=0.1)
    >>> gpu.counter_mj(0.25) - gpu.energy_offset_mj  # the counter last ticked at 0.2 s
    40000
    >>> FakeProcess(4242, start_s=1.0).alive(0.5)
    False
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mlflow_green.testing.fake_nvml_errors import NVML_ERROR_UNKNOWN, NVMLError

Trace = float | Callable[[float], float]

_INTEGRATION_STEPS = 2000
GIB = 1024**3


def value_at(trace: Trace, t_s: float) -> float:
    """A trace's value at ``t_s`` (a constant, or a function of seconds)."""
    return float(trace(t_s)) if callable(trace) else float(trace)


def integral(trace: Trace, t0_s: float, t1_s: float) -> float:
    """∫ trace dt over ``[t0_s, t1_s]``: exact for constants, finely integrated for functions."""
    if t1_s <= t0_s:
        return 0.0
    if not callable(trace):
        return float(trace) * (t1_s - t0_s)
    dt = (t1_s - t0_s) / _INTEGRATION_STEPS
    return sum(value_at(trace, t0_s + (i + 0.5) * dt) for i in range(_INTEGRATION_STEPS)) * dt


class ManualClock:
    """A clock that only moves when told to; call it for the current time in seconds.

    Example:
        >>> clock = ManualClock(10.0)
        >>> clock.advance(2.5)
        >>> clock()
        12.5
    """

    def __init__(self, start_s: float = 0.0) -> None:
        self.t_s = start_s

    def __call__(self) -> float:
        return self.t_s

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.t_s += seconds

    def set(self, t_s: float) -> None:
        """Move the clock to an absolute time."""
        self.t_s = t_s

    def sleep(self, seconds: float) -> None:
        """``time.sleep`` for code under test: advances the clock instead of waiting."""
        self.t_s += max(seconds, 0.0)


@dataclass
class FakeProcess:
    """A process holding a context on a fake GPU (or MIG slice) during ``[start_s, end_s)``.

    Attributes:
        pid: Its process id, as NVML reports it (a host PID in many containers).
        used_memory_bytes: ``usedGpuMemory`` in the running-process list.
        kind: ``compute`` (CUDA) or ``graphics`` (listed by the graphics-process query).
        start_s: When its context appeared (frameworks initialise CUDA lazily).
        end_s: When it went away (None: until the end).
        sm_util: Its SM utilisation in percent, reported by ``nvmlDeviceGetProcessUtilization``.
    """

    pid: int
    used_memory_bytes: int = GIB
    kind: str = "compute"
    start_s: float = 0.0
    end_s: float | None = None
    sm_util: Trace = 0.0

    def alive(self, t_s: float) -> bool:
        """Whether its context exists at ``t_s``."""
        return self.start_s <= t_s and (self.end_s is None or t_s < self.end_s)


@dataclass
class FakeFault:
    """Queries of a device that fail with an NVML error during ``[from_s, until_s)``.

    Attributes:
        error: An NVML return code (``NVML_ERROR_TIMEOUT``...) or an error class.
        from_s: When the fault starts.
        until_s: When the device answers again (None: never).
        functions: The NVML functions that fail (None: every query of the device).
        calls: Fail only this many matching calls, then answer (a one-off glitch).
    """

    error: int | type[NVMLError] = NVML_ERROR_UNKNOWN
    from_s: float = 0.0
    until_s: float | None = None
    functions: frozenset[str] | None = None
    calls: int | None = None
    failed: int = 0

    def triggers(self, function: str, t_s: float) -> bool:
        """Whether this call fails (counts it when it does)."""
        if t_s < self.from_s or (self.until_s is not None and t_s >= self.until_s):
            return False
        if self.functions is not None and function not in self.functions:
            return False
        if self.calls is not None and self.failed >= self.calls:
            return False
        self.failed += 1
        return True

    def exception(self) -> NVMLError:
        """The error to raise."""
        return NVMLError(self.error) if isinstance(self.error, int) else self.error()


@dataclass
class FakeMIG:
    """A MIG device (one compute instance of one GPU instance) on a :class:`FakeGPU` in MIG mode.

    NVML answers neither energy, power, utilisation nor power limit for a MIG device: those
    belong to the parent GPU.

    Attributes:
        uuid: ``MIG-<uuid>`` (driver R470 and later).
        gpu_instance_id: Its GPU instance id (``nvmlDeviceGetGpuInstanceId``).
        compute_instance_id: Its compute instance id.
        compute_slices: Compute slices of the GPU it holds (``computeInstanceSliceCount``; 3 for
            a ``3g.40gb`` slice of a 7-slice A100).
        gpu_slices: Slices of its GPU instance (``gpuInstanceSliceCount``; default ``compute_slices``).
        multiprocessor_count: Its SMs.
        processes: Processes holding a context on it.
    """

    uuid: str
    name: str = "NVIDIA A100-SXM4-80GB MIG 3g.40gb"
    gpu_instance_id: int = 1
    compute_instance_id: int = 0
    compute_slices: int = 3
    gpu_slices: int | None = None
    multiprocessor_count: int = 42
    memory_mb: int = 40_192
    processes: list[FakeProcess] = field(default_factory=list)
    faults: list[FakeFault] = field(default_factory=list)


@dataclass
class FakeGPU:
    """One fake NVIDIA GPU.

    Attributes:
        uuid: Its UUID, e.g. ``GPU-0c2e5d7a-...`` (matched by ``CUDA_VISIBLE_DEVICES`` prefixes).
        name: Its product name.
        power_w: Watts, constant or a function of seconds.
        has_energy_counter: Whether ``nvmlDeviceGetTotalEnergyConsumption`` works (Volta and later).
        has_power_reading: Whether ``nvmlDeviceGetPowerUsage`` works.
        fail_after_s: Every query of this device raises ``NVMLError_GpuIsLost`` from then on.
        energy_offset_mj: The counter's value at time zero (counters start at driver load).
        update_period_s: The counter and the power reading change only every this many seconds
            (0: continuously); real GPUs update every 20–100 ms.
        counter_resets_at_s: Times at which the energy counter restarts from zero (a driver reload).
        power_limit_w: ``nvmlDeviceGetEnforcedPowerLimit`` in watts (None: not supported).
        utilisation_pct: ``nvmlDeviceGetUtilizationRates().gpu`` (None: not supported); never less
            than its processes' ``sm_util`` summed (capped at 100), as a real GPU reports.
        processes: Processes holding a context on it (ignored in MIG mode: see ``mig_devices``).
        process_utilisation: Whether ``nvmlDeviceGetProcessUtilization`` works.
        process_sample_period_s: How often the driver samples per-process utilisation.
        faults: Scripted NVML errors.
        mig_devices: Its MIG devices; non-empty means MIG mode is on.
        mig_capable: Whether it supports MIG at all (True when ``mig_devices`` is given).
        max_mig_devices: ``nvmlDeviceGetMaxMigDeviceCount``: its compute slices (7 on an A100).
    """

    uuid: str
    name: str = "NVIDIA Fake GPU"
    power_w: Trace = 100.0
    has_energy_counter: bool = True
    has_power_reading: bool = True
    fail_after_s: float | None = None
    energy_offset_mj: int = 1_234_567
    update_period_s: float = 0.0
    counter_resets_at_s: Sequence[float] = ()
    power_limit_w: float | None = 300.0
    utilisation_pct: Trace | None = 0.0
    processes: list[FakeProcess] = field(default_factory=list)
    process_utilisation: bool = True
    process_sample_period_s: float = 0.1
    faults: list[FakeFault] = field(default_factory=list)
    mig_devices: list[FakeMIG] = field(default_factory=list)
    mig_capable: bool = False
    max_mig_devices: int = 7

    def power_at(self, elapsed_s: float) -> float:
        """Power in watts at ``elapsed_s`` seconds."""
        return value_at(self.power_w, elapsed_s)

    def energy_j(self, elapsed_s: float) -> float:
        """Exact energy over ``[0, elapsed_s]``, in joules."""
        return integral(self.power_w, 0.0, elapsed_s)

    def _ticked(self, elapsed_s: float) -> float:
        """The last time the readings were refreshed, at or before ``elapsed_s``."""
        if self.update_period_s <= 0:
            return elapsed_s
        return math.floor(elapsed_s / self.update_period_s + 1e-9) * self.update_period_s

    def counter_mj(self, elapsed_s: float) -> int:
        """What ``nvmlDeviceGetTotalEnergyConsumption`` answers at ``elapsed_s``."""
        t_s = self._ticked(elapsed_s)
        resets = [r for r in self.counter_resets_at_s if r <= t_s]
        if not resets:
            return self.energy_offset_mj + round(self.energy_j(t_s) * 1000)
        return round(integral(self.power_w, max(resets), t_s) * 1000)

    def reported_power_w(self, elapsed_s: float) -> float:
        """What ``nvmlDeviceGetPowerUsage`` reports (refreshed every ``update_period_s``)."""
        return self.power_at(self._ticked(elapsed_s))


def default_clock() -> Callable[[], float]:
    """The clock a :class:`~mlflow_green.testing.FakeNVML` uses unless given one."""
    return time.monotonic
