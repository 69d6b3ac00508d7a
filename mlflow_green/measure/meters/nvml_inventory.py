"""What NVML sees on this host: physical GPUs, their MIG slices, and which of them CUDA makes visible.

A MIG slice has no energy counter or power reading of its own (NVML answers those for the
physical GPU only), so it is billed a fixed share of its parent GPU's energy: its compute slices
(``nvmlDeviceGetAttributes().computeInstanceSliceCount``) over the parent's compute slices
(``nvmlDeviceGetMaxMigDeviceCount``: 7 on an A100 or H100, 4 on an A30) — the fraction of the
GPU's SMs it holds. When the slice sizes cannot be read, the parent is split evenly among its MIG
devices, and the note says so.

Example:
    >>> from mlflow_green.testing import FakeGPU, FakeMIG, FakeNVML
    >>> nvml = FakeNVML([FakeGPU("GPU-p", mig_devices=[FakeMIG("MIG-s", compute_slices=3)])])
    >>> nvml.nvmlInit()
    >>> gpus, _ = enumerate_gpus(nvml)
    >>> gpus[0].migs[0].fraction, gpus[0].migs[0].fraction_how
    (0.42857142857142855, "3/7 of GPU-p: its compute slices over the GPU's")
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from mlflow_green.measure import hardware
from mlflow_green.measure.meters.cuda_visible import MigRef, parse_visible_devices, resolve_visible

logger = logging.getLogger(__name__)


def describe_error(exc: BaseException) -> str:
    """``NVMLError_GpuIsLost: GPU is lost``: the class and message of an error."""
    return f"{type(exc).__name__}: {exc}"


def error_code(exc: BaseException) -> int | None:
    """The NVML return code an error carries (``pynvml`` puts it in ``.value``)."""
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_NO_PERMISSION = 4


@dataclass
class MigSlice:
    """One MIG device: its handle, identity, and the fixed share of its parent it is billed."""

    handle: Any
    uuid: str
    name: str
    parent_index: int
    gpu_instance_id: int | None
    compute_instance_id: int | None
    fraction: float = 1.0
    fraction_how: str = ""


@dataclass
class PhysicalGpu:
    """One physical GPU as NVML lists it (``handle`` None when it did not answer)."""

    index: int
    handle: Any
    uuid: str
    name: str
    mig_enabled: bool = False
    migs: list[MigSlice] = field(default_factory=list)
    problem: str = ""


@dataclass
class Target:
    """A device to bill: a whole GPU, or one MIG slice billed a share of its parent's energy.

    Attributes:
        device_id: ``gpu:GPU-…`` or ``gpu:MIG-…``.
        handle: Where its running processes are listed (the slice's own handle for MIG).
        gpu: The physical GPU whose energy is read.
        fraction: Its fixed share of that energy (1 for a whole GPU).
        fraction_how: How the fraction was computed (empty for a whole GPU).
    """

    device_id: str
    uuid: str
    name: str
    handle: Any
    gpu: PhysicalGpu
    fraction: float = 1.0
    fraction_how: str = ""

    @property
    def is_mig(self) -> bool:
        """True for a MIG slice."""
        return self.uuid.startswith("MIG-")


def _text(nvml: Any, function: str, handle: Any, default: str = "") -> str:
    try:
        return hardware.text(getattr(nvml, function)(handle))
    except Exception:
        return default


def _int_or_none(nvml: Any, function: str, handle: Any) -> int | None:
    try:
        return int(getattr(nvml, function)(handle))
    except Exception:
        return None


def _mig_slices(nvml: Any, gpu: PhysicalGpu) -> list[MigSlice]:
    """The MIG devices of a GPU in MIG mode, each with its share of the GPU."""
    try:
        slots = int(nvml.nvmlDeviceGetMaxMigDeviceCount(gpu.handle))
    except Exception as exc:
        logger.warning("NVML: cannot count the MIG slots of %s (%s)", gpu.uuid, describe_error(exc))
        return []
    slices: list[MigSlice] = []
    sizes: list[int | None] = []
    for slot in range(slots):
        try:
            handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu.handle, slot)
        except Exception:  # NVML_ERROR_NOT_FOUND: no MIG device in this slot
            continue
        uuid = _text(nvml, "nvmlDeviceGetUUID", handle)
        if not uuid:
            continue
        try:
            size: int | None = int(nvml.nvmlDeviceGetAttributes(handle).computeInstanceSliceCount)
        except Exception:
            size = None
        sizes.append(size)
        slices.append(
            MigSlice(
                handle,
                uuid,
                _text(nvml, "nvmlDeviceGetName", handle, f"{gpu.name} MIG"),
                gpu.index,
                _int_or_none(nvml, "nvmlDeviceGetGpuInstanceId", handle),
                _int_or_none(nvml, "nvmlDeviceGetComputeInstanceId", handle),
            )
        )
    for mig, size in zip(slices, sizes):
        if size and slots and size <= slots:
            mig.fraction = size / slots
            mig.fraction_how = f"{size}/{slots} of {gpu.uuid}: its compute slices over the GPU's"
        else:
            mig.fraction = 1.0 / len(slices)
            mig.fraction_how = (
                f"1/{len(slices)} of {gpu.uuid}: split evenly among its {len(slices)} MIG devices "
                "(their sizes could not be read)"
            )
    return slices


def enumerate_gpus(nvml: Any) -> tuple[list[PhysicalGpu], list[str]]:
    """Every physical GPU and its MIG slices; nvmlInit must have been called.

    Returns the GPUs (by NVML index) and warnings about devices that did not answer.
    """
    gpus: list[PhysicalGpu] = []
    problems: list[str] = []
    for index in range(int(nvml.nvmlDeviceGetCount())):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = hardware.text(nvml.nvmlDeviceGetUUID(handle))
        except Exception as exc:
            problem = f"NVML: GPU {index} does not answer ({describe_error(exc)}); it cannot be measured"
            logger.warning(problem)
            problems.append(problem)
            gpus.append(PhysicalGpu(index, None, "", f"GPU {index}", problem=problem))
            continue
        gpu = PhysicalGpu(index, handle, uuid, _text(nvml, "nvmlDeviceGetName", handle, "NVIDIA GPU"))
        try:
            gpu.mig_enabled = int(nvml.nvmlDeviceGetMigMode(handle)[0]) == 1
        except Exception:  # NVML_ERROR_NOT_SUPPORTED: a GPU without MIG
            gpu.mig_enabled = False
        if gpu.mig_enabled:
            gpu.migs = _mig_slices(nvml, gpu)
        gpus.append(gpu)
    return gpus, problems


def _whole(gpu: PhysicalGpu) -> Target:
    return Target(f"gpu:{gpu.uuid}", gpu.uuid, gpu.name, gpu.handle, gpu)


def _slice(gpu: PhysicalGpu, mig: MigSlice) -> Target:
    return Target(f"gpu:{mig.uuid}", mig.uuid, mig.name, mig.handle, gpu, mig.fraction, mig.fraction_how)


def visible_targets(
    gpus: list[PhysicalGpu], cuda_visible_devices: str | None, *, whole_gpus: bool
) -> tuple[list[Target], list[str]]:
    """The devices to bill under ``CUDA_VISIBLE_DEVICES``, and notes on what was left out.

    Args:
        gpus: From :func:`enumerate_gpus`.
        cuda_visible_devices: The variable's value (None when unset).
        whole_gpus: Bill a visible GPU in MIG mode whole (``scope="machine"``) instead of
            offering each of its MIG slices (``scope="process"``: the slices this training
            holds a context on are billed).
    """
    migs = [mig for gpu in gpus for mig in gpu.migs]
    refs = [MigRef(m.uuid, m.parent_index, m.gpu_instance_id, m.compute_instance_id) for m in migs]
    visible = resolve_visible(parse_visible_devices(cuda_visible_devices), [g.uuid for g in gpus], refs)
    notes = [f"CUDA_VISIBLE_DEVICES={cuda_visible_devices!r}: {visible.note}"] if visible.note else []
    targets: list[Target] = []
    for index in visible.gpus:
        gpu = gpus[index]
        if gpu.handle is None:
            notes.append(gpu.problem)
        elif gpu.mig_enabled and gpu.migs and not whole_gpus:
            targets.extend(_slice(gpu, mig) for mig in gpu.migs)
        else:
            targets.append(_whole(gpu))
    for position in visible.migs:
        mig = migs[position]
        targets.append(_slice(gpus[mig.parent_index], mig))
    return targets, notes
