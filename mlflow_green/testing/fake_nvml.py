"""A fake ``pynvml`` module: GPUs with scripted power, energy counters and failures.

Pass a :class:`FakeNVML` wherever a ``pynvml``-compatible module is accepted (``NvmlMeter(nvml=...)``,
``hardware.gpu_names(nvml=...)``). Time is read from an injectable clock; power is a constant
or a function of seconds since the fake was created.

Example:
    >>> from mlflow_green.measure.meters.nvml import NvmlMeter
    >>> clock = ManualClock()
    >>> nvml = FakeNVML([FakeGPU("GPU-aaaa", power_w=200.0)], clock=clock)
    >>> meter = NvmlMeter(nvml=nvml, environ={})
    >>> meter.open(clock())
    >>> clock.advance(3.0)
    >>> meter.read(clock())[0].energy_j
    600.0
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PowerTrace = float | Callable[[float], float]

_INTEGRATION_STEPS = 2000


class NVMLError(Exception):
    """Base class of the fake's errors, like ``pynvml.NVMLError``."""

    def __init__(self, message: str = "Unknown Error") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NVMLError_DriverNotLoaded(NVMLError):  # noqa: N801 - pynvml's naming
    """``nvmlInit`` without a driver."""


class NVMLError_Uninitialized(NVMLError):  # noqa: N801
    """A call before ``nvmlInit``."""


class NVMLError_NotSupported(NVMLError):  # noqa: N801
    """A query the device does not support (e.g. the energy counter before Volta)."""


class NVMLError_GpuIsLost(NVMLError):  # noqa: N801
    """The device fell off the bus."""


class NVMLError_InvalidArgument(NVMLError):  # noqa: N801
    """A bad device index."""


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


@dataclass
class FakeGPU:
    """One fake NVIDIA GPU.

    Attributes:
        uuid: Its UUID, e.g. ``GPU-0c2e5d7a-...`` (matched by ``CUDA_VISIBLE_DEVICES`` prefixes).
        name: Its product name.
        power_w: Watts, constant or a function of seconds since the :class:`FakeNVML` was created.
        has_energy_counter: Whether ``nvmlDeviceGetTotalEnergyConsumption`` works (Volta and later).
        has_power_reading: Whether ``nvmlDeviceGetPowerUsage`` works.
        fail_after_s: Every query of this device raises ``NVMLError_GpuIsLost`` from this many
            seconds after the fake was created.
        energy_offset_mj: The counter's value when the fake was created (counters start at
            driver load, not at zero).
    """

    uuid: str
    name: str = "NVIDIA Fake GPU"
    power_w: PowerTrace = 100.0
    has_energy_counter: bool = True
    has_power_reading: bool = True
    fail_after_s: float | None = None
    energy_offset_mj: int = 1_234_567

    def power_at(self, elapsed_s: float) -> float:
        """Power in watts at ``elapsed_s`` seconds."""
        return float(self.power_w(elapsed_s)) if callable(self.power_w) else float(self.power_w)

    def energy_j(self, elapsed_s: float) -> float:
        """Exact (constant) or finely integrated (function) energy over ``[0, elapsed_s]``."""
        if elapsed_s <= 0:
            return 0.0
        if not callable(self.power_w):
            return float(self.power_w) * elapsed_s
        dt = elapsed_s / _INTEGRATION_STEPS
        return sum(self.power_at((i + 0.5) * dt) for i in range(_INTEGRATION_STEPS)) * dt


@dataclass(frozen=True)
class _Handle:
    index: int


class FakeNVML:
    """An object with the ``pynvml`` functions mlflow-green uses, over a list of fake GPUs.

    Args:
        gpus: The GPUs, in NVML index order.
        clock: Seconds, monotonic; the GPUs' time zero is its value at construction.
        driver: False makes ``nvmlInit`` raise ``NVMLError_DriverNotLoaded`` (no NVIDIA driver).

    Attributes:
        calls: How many times each function was called, by name.
        initialised: Current ``nvmlInit`` reference count.

    Example:
        >>> nvml = FakeNVML([FakeGPU("GPU-1", name="NVIDIA H100")])
        >>> nvml.nvmlInit()
        >>> nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(0))
        'NVIDIA H100'
    """

    NVMLError = NVMLError
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_InvalidArgument = NVMLError_InvalidArgument

    def __init__(
        self,
        gpus: Sequence[FakeGPU] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        driver: bool = True,
    ) -> None:
        self.gpus = list(gpus)
        self.clock = clock
        self.driver = driver
        self.t0_s = clock()
        self.initialised = 0
        self.calls: Counter[str] = Counter()

    def _elapsed_s(self) -> float:
        return self.clock() - self.t0_s

    def _gpu(self, handle: _Handle) -> FakeGPU:
        if self.initialised <= 0:
            raise NVMLError_Uninitialized("Uninitialized")
        gpu = self.gpus[handle.index]
        if gpu.fail_after_s is not None and self._elapsed_s() >= gpu.fail_after_s:
            raise NVMLError_GpuIsLost("GPU is lost")
        return gpu

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's naming
        self.calls["nvmlInit"] += 1
        if not self.driver:
            raise NVMLError_DriverNotLoaded("Driver Not Loaded")
        self.initialised += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.calls["nvmlShutdown"] += 1
        if self.initialised <= 0:
            raise NVMLError_Uninitialized("Uninitialized")
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self.calls["nvmlDeviceGetCount"] += 1
        if self.initialised <= 0:
            raise NVMLError_Uninitialized("Uninitialized")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:  # noqa: N802
        self.calls["nvmlDeviceGetHandleByIndex"] += 1
        if self.initialised <= 0:
            raise NVMLError_Uninitialized("Uninitialized")
        if not 0 <= index < len(self.gpus):
            raise NVMLError_InvalidArgument("Invalid Argument")
        return _Handle(index)

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:  # noqa: N802
        self.calls["nvmlDeviceGetUUID"] += 1
        return self._gpu(handle).uuid

    def nvmlDeviceGetName(self, handle: _Handle) -> str:  # noqa: N802
        self.calls["nvmlDeviceGetName"] += 1
        return self._gpu(handle).name

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:  # noqa: N802
        """Millijoules since the driver loaded."""
        self.calls["nvmlDeviceGetTotalEnergyConsumption"] += 1
        gpu = self._gpu(handle)
        if not gpu.has_energy_counter:
            raise NVMLError_NotSupported("Not Supported")
        return gpu.energy_offset_mj + round(gpu.energy_j(self._elapsed_s()) * 1000)

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:  # noqa: N802
        """Milliwatts, now."""
        self.calls["nvmlDeviceGetPowerUsage"] += 1
        gpu = self._gpu(handle)
        if not gpu.has_power_reading:
            raise NVMLError_NotSupported("Not Supported")
        return round(gpu.power_at(self._elapsed_s()) * 1000)
