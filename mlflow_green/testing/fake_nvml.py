"""A fake ``pynvml`` module that behaves like real NVIDIA hardware, for tests.

Pass a :class:`FakeNVML` wherever a ``pynvml``-compatible module is accepted
(``NvmlMeter(nvml=...)``, ``hardware.gpu_names(nvml=...)``). Like the real library it has
counters that tick every few tens of milliseconds, running-process lists (compute and
graphics, with PIDs and memory), per-process utilisation samples with timestamps, MIG
parent and child handles, transient errors raised as ``NVMLError`` subclasses carrying the
real return codes, per-device counter resets, enforced power limits and utilisation rates.
The function names and signatures are those of nvidia-ml-py.

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

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from mlflow_green.testing import fake_nvml_errors as errors
from mlflow_green.testing.fake_gpu import (
    FakeFault,
    FakeGPU,
    FakeMIG,
    FakeProcess,
    ManualClock,
    default_clock,
    value_at,
)
from mlflow_green.testing.fake_nvml_errors import (
    NVMLError,
    NVMLError_DriverNotLoaded,
    NVMLError_GpuIsLost,
    NVMLError_InvalidArgument,
    NVMLError_NotFound,
    NVMLError_NotSupported,
    NVMLError_Uninitialized,
)
from mlflow_green.testing.fake_nvml_types import (
    DeviceAttributes,
    Handle,
    ProcessInfo,
    ProcessUtilizationSample,
    Utilization,
)

__all__ = ["FakeFault", "FakeGPU", "FakeMIG", "FakeNVML", "FakeProcess", "ManualClock", "NVMLError"]

PROCESS_SAMPLE_BUFFER = 100
"""Per-process utilisation sample periods the fake driver keeps (``nvmlDeviceGetProcessUtilization``)."""

class FakeNVML:
    """An object with the ``pynvml`` functions mlflow-green uses, over a list of fake GPUs.

    Args:
        gpus: The physical GPUs, in NVML index order (PCI bus order).
        clock: Seconds, monotonic; the GPUs' time zero is its value at construction.
        driver: False makes ``nvmlInit`` raise ``NVMLError_DriverNotLoaded`` (no NVIDIA driver).
        unix_epoch_s: Wall-clock time at time zero, for the µs timestamps of utilisation samples.

    Attributes:
        calls: How many times each function was called, by name.
        initialised: Current ``nvmlInit`` reference count.

    Every ``NVMLError_*`` class and ``NVML_ERROR_*`` code is also an attribute, as in pynvml.

    Example:
        >>> nvml = FakeNVML([FakeGPU("GPU-1", name="NVIDIA H100")])
        >>> nvml.nvmlInit()
        >>> nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(0))
        'NVIDIA H100'
    """

    NVMLError = NVMLError

    def __init__(
        self,
        gpus: Sequence[FakeGPU] = (),
        *,
        clock: Callable[[], float] | None = None,
        driver: bool = True,
        unix_epoch_s: float = 1_700_000_000.0,
    ) -> None:
        self.gpus = list(gpus)
        self.clock = clock or default_clock()
        self.driver = driver
        self.unix_epoch_s = unix_epoch_s
        self.t0_s = self.clock()
        self.initialised = 0
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        if name in errors.ERROR_CLASSES:
            return errors.ERROR_CLASSES[name]
        if name in errors.ERROR_CODES:
            return errors.ERROR_CODES[name]
        raise AttributeError(name)

    # -- plumbing --------------------------------------------------------------------------------
    def elapsed_s(self) -> float:
        """Seconds since time zero."""
        return self.clock() - self.t0_s

    def _call(self, function: str) -> None:
        self.calls[function] += 1
        if self.initialised <= 0:
            raise NVMLError_Uninitialized()

    def _device(self, function: str, handle: Handle) -> tuple[FakeGPU, FakeMIG | None]:
        """The device behind ``handle``, raising its scripted faults for this call."""
        self._call(function)
        if not isinstance(handle, Handle) or not 0 <= handle.index < len(self.gpus):
            raise NVMLError_InvalidArgument()
        gpu = self.gpus[handle.index]
        mig = None
        if handle.mig is not None:
            if not 0 <= handle.mig < len(gpu.mig_devices):
                raise NVMLError_InvalidArgument()
            mig = gpu.mig_devices[handle.mig]
        t_s = self.elapsed_s()
        if gpu.fail_after_s is not None and t_s >= gpu.fail_after_s:
            raise NVMLError_GpuIsLost()
        for fault in (*gpu.faults, *(mig.faults if mig is not None else ())):
            if fault.triggers(function, t_s):
                raise fault.exception()
        return gpu, mig

    def _whole_gpu(self, function: str, handle: Handle) -> FakeGPU:
        """A query NVML answers only for a physical GPU (MIG devices: Not Supported)."""
        gpu, mig = self._device(function, handle)
        if mig is not None:
            raise NVMLError_NotSupported()
        return gpu

    # -- library ---------------------------------------------------------------------------------
    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's naming
        self.calls["nvmlInit"] += 1
        if not self.driver:
            raise NVMLError_DriverNotLoaded()
        self.initialised += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self._call("nvmlShutdown")
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self._call("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Handle:  # noqa: N802
        self._call("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError_InvalidArgument()
        return Handle(index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> Handle:  # noqa: N802
        self._call("nvmlDeviceGetHandleByUUID")
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        for i, gpu in enumerate(self.gpus):
            if gpu.uuid == text:
                return Handle(i)
            for j, mig in enumerate(gpu.mig_devices):
                if mig.uuid == text:
                    return Handle(i, j)
        raise NVMLError_NotFound()

    # -- identity --------------------------------------------------------------------------------
    def nvmlDeviceGetUUID(self, handle: Handle) -> str:  # noqa: N802
        gpu, mig = self._device("nvmlDeviceGetUUID", handle)
        return mig.uuid if mig is not None else gpu.uuid

    def nvmlDeviceGetName(self, handle: Handle) -> str:  # noqa: N802
        gpu, mig = self._device("nvmlDeviceGetName", handle)
        return mig.name if mig is not None else gpu.name

    # -- energy and power ------------------------------------------------------------------------
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Handle) -> int:  # noqa: N802
        """Millijoules since the driver loaded (refreshed every ``update_period_s``)."""
        gpu = self._whole_gpu("nvmlDeviceGetTotalEnergyConsumption", handle)
        if not gpu.has_energy_counter:
            raise NVMLError_NotSupported()
        return gpu.counter_mj(self.elapsed_s())

    def nvmlDeviceGetPowerUsage(self, handle: Handle) -> int:  # noqa: N802
        """Milliwatts, as last refreshed."""
        gpu = self._whole_gpu("nvmlDeviceGetPowerUsage", handle)
        if not gpu.has_power_reading:
            raise NVMLError_NotSupported()
        return round(gpu.reported_power_w(self.elapsed_s()) * 1000)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Handle) -> int:  # noqa: N802
        """Milliwatts."""
        gpu = self._whole_gpu("nvmlDeviceGetEnforcedPowerLimit", handle)
        if gpu.power_limit_w is None:
            raise NVMLError_NotSupported()
        return round(gpu.power_limit_w * 1000)

    def nvmlDeviceGetUtilizationRates(self, handle: Handle) -> Utilization:  # noqa: N802
        gpu = self._whole_gpu("nvmlDeviceGetUtilizationRates", handle)
        if gpu.utilisation_pct is None or gpu.mig_devices:
            raise NVMLError_NotSupported()
        t_s = self.elapsed_s()  # at least what its processes keep busy, as on a real GPU
        busy_pct = sum(value_at(p.sm_util, t_s) for p in gpu.processes if p.alive(t_s))
        return Utilization(round(max(value_at(gpu.utilisation_pct, t_s), min(busy_pct, 100.0))))

    # -- processes -------------------------------------------------------------------------------
    def _processes(self, gpu: FakeGPU, mig: FakeMIG | None, kind: str) -> list[ProcessInfo]:
        t_s = self.elapsed_s()
        slices = [mig] if mig is not None else gpu.mig_devices
        if not slices:
            return [ProcessInfo(p.pid, p.used_memory_bytes) for p in gpu.processes if p.kind == kind and p.alive(t_s)]
        return [
            ProcessInfo(p.pid, p.used_memory_bytes, s.gpu_instance_id, s.compute_instance_id)
            for s in slices
            for p in s.processes
            if p.kind == kind and p.alive(t_s)
        ]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Handle) -> list[ProcessInfo]:  # noqa: N802
        gpu, mig = self._device("nvmlDeviceGetComputeRunningProcesses", handle)
        return self._processes(gpu, mig, "compute")

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: Handle) -> list[ProcessInfo]:  # noqa: N802
        gpu, mig = self._device("nvmlDeviceGetGraphicsRunningProcesses", handle)
        return self._processes(gpu, mig, "graphics")

    def nvmlDeviceGetProcessUtilization(self, handle: Handle, timeStamp: int) -> list[ProcessUtilizationSample]:  # noqa: N802, N803
        """The buffered per-process samples newer than ``timeStamp`` (µs); NotFound when there is none.

        As the driver does: one sample per busy process every ``process_sample_period_s``, kept in a
        buffer of ``PROCESS_SAMPLE_BUFFER`` periods (``timeStamp=0`` returns all of it, including
        samples from before the caller started looking); idle processes are not sampled.
        """
        gpu = self._whole_gpu("nvmlDeviceGetProcessUtilization", handle)
        if not gpu.process_utilisation or gpu.mig_devices:
            raise NVMLError_NotSupported()
        period_s, now_s = gpu.process_sample_period_s, self.elapsed_s()
        latest = int(now_s // period_s) if period_s > 0 else 0
        ticks = range(max(latest - PROCESS_SAMPLE_BUFFER + 1, 0), latest + 1) if period_s > 0 else [0]
        samples = []
        for tick in ticks:
            sample_s = tick * period_s if period_s > 0 else now_s
            stamp_us = round((self.unix_epoch_s + sample_s) * 1e6)
            if stamp_us <= int(timeStamp):
                continue
            samples += [
                ProcessUtilizationSample(p.pid, stamp_us, round(value_at(p.sm_util, sample_s)))
                for p in gpu.processes
                if p.alive(sample_s) and value_at(p.sm_util, sample_s) > 0
            ]
        if not samples:
            raise NVMLError_NotFound()
        return samples

    # -- MIG -------------------------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, handle: Handle) -> list[int]:  # noqa: N802
        gpu = self._whole_gpu("nvmlDeviceGetMigMode", handle)
        if not (gpu.mig_capable or gpu.mig_devices):
            raise NVMLError_NotSupported()
        mode = 1 if gpu.mig_devices else 0
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Handle) -> int:  # noqa: N802
        gpu = self._whole_gpu("nvmlDeviceGetMaxMigDeviceCount", handle)
        return gpu.max_mig_devices if (gpu.mig_capable or gpu.mig_devices) else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Handle, index: int) -> Handle:  # noqa: N802
        gpu = self._whole_gpu("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        if not gpu.mig_devices:
            raise NVMLError_InvalidArgument()
        if not 0 <= index < len(gpu.mig_devices):
            raise NVMLError_NotFound()
        return Handle(handle.index, index)

    def nvmlDeviceIsMigDeviceHandle(self, handle: Handle) -> bool:  # noqa: N802
        self._device("nvmlDeviceIsMigDeviceHandle", handle)
        return handle.mig is not None

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: Handle) -> Handle:  # noqa: N802
        _, mig = self._device("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", handle)
        if mig is None:
            raise NVMLError_InvalidArgument()
        return Handle(handle.index)

    def _mig(self, function: str, handle: Handle) -> FakeMIG:
        _, mig = self._device(function, handle)
        if mig is None:
            raise NVMLError_NotSupported()
        return mig

    def nvmlDeviceGetGpuInstanceId(self, handle: Handle) -> int:  # noqa: N802
        return self._mig("nvmlDeviceGetGpuInstanceId", handle).gpu_instance_id

    def nvmlDeviceGetComputeInstanceId(self, handle: Handle) -> int:  # noqa: N802
        return self._mig("nvmlDeviceGetComputeInstanceId", handle).compute_instance_id

    def nvmlDeviceGetAttributes(self, handle: Handle) -> DeviceAttributes:  # noqa: N802
        """Engine counts of a MIG device (NVML answers it for MIG device handles only)."""
        mig = self._mig("nvmlDeviceGetAttributes", handle)
        return DeviceAttributes(
            mig.multiprocessor_count, mig.gpu_slices or mig.compute_slices, mig.compute_slices, mig.memory_mb
        )

