"""The values :class:`~mlflow_green.testing.FakeNVML` returns, with pynvml's field names.

Example:
    >>> ProcessInfo(42, 1 << 30).gpuInstanceId == NVML_VALUE_NOT_AVAILABLE
    True
"""

from __future__ import annotations

from dataclasses import dataclass

NVML_VALUE_NOT_AVAILABLE = 0xFFFFFFFF
"""``gpuInstanceId`` / ``computeInstanceId`` of a process on a GPU that is not in MIG mode."""


@dataclass(frozen=True)
class Handle:
    """An NVML device handle: a GPU by index, or one of its MIG devices."""

    index: int
    mig: int | None = None


@dataclass(frozen=True)
class ProcessInfo:
    """One entry of a running-process list (``c_nvmlProcessInfo_v3_t`` as pynvml returns it)."""

    pid: int
    usedGpuMemory: int  # noqa: N815 - pynvml's field names
    gpuInstanceId: int = NVML_VALUE_NOT_AVAILABLE  # noqa: N815
    computeInstanceId: int = NVML_VALUE_NOT_AVAILABLE  # noqa: N815


@dataclass(frozen=True)
class ProcessUtilizationSample:
    """One ``c_nvmlProcessUtilizationSample_t``: a process's utilisation at ``timeStamp`` (µs)."""

    pid: int
    timeStamp: int  # noqa: N815
    smUtil: int  # noqa: N815
    memUtil: int = 0  # noqa: N815
    encUtil: int = 0  # noqa: N815
    decUtil: int = 0  # noqa: N815


@dataclass(frozen=True)
class Utilization:
    """``c_nvmlUtilization_t``: GPU and memory utilisation in percent."""

    gpu: int
    memory: int = 0


@dataclass(frozen=True)
class DeviceAttributes:
    """``c_nvmlDeviceAttributes`` of a MIG device."""

    multiprocessorCount: int  # noqa: N815
    gpuInstanceSliceCount: int  # noqa: N815
    computeInstanceSliceCount: int  # noqa: N815
    memorySizeMB: int  # noqa: N815
    sharedCopyEngineCount: int = 1  # noqa: N815
    sharedDecoderCount: int = 1  # noqa: N815
    sharedEncoderCount: int = 0  # noqa: N815
    sharedJpegCount: int = 0  # noqa: N815
    sharedOfaCount: int = 0  # noqa: N815
