"""What a torch training's ranks share with the training session: a collective, device ownership, hosts.

Used by the Lightning and Hugging Face callbacks. Each rank bills its own process tree — the
other ranks on its host excluded (Lightning's ddp launcher makes rank 0 their parent) — so under
``scope="process"`` it bills only the GPUs its own processes hold and its own CPU/RAM share;
whole-device readings (``scope="machine"``) of CPU and RAM are kept by local rank 0 only, GPUs
are merged by UUID, and rank zero logs. The framework's device is offered to the NVML meter as a
fallback for containers whose NVML lists host PIDs.

Example::

    ctx = distributed_context(world_size=2, is_logging_rank=rank == 0)   # None-safe in one process
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mlflow_green.integrations._device_sync import torch_synchronizer
from mlflow_green.measure.attribution import ProcessTree
from mlflow_green.measure.host import host_id
from mlflow_green.measure.readings import DeviceCounter
from mlflow_green.measure.tracker import EnergyTracker
from mlflow_green.training.distributed import DistributedContext


def process_group_ready() -> bool:
    """True when ``torch.distributed`` is initialised with more than one rank."""
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order: the session's collective."""
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, value)
    return parts


def distributed_context(*, world_size: int, is_logging_rank: bool, tracker: EnergyTracker | None = None) -> DistributedContext:
    """The session's view of the ranks (one collective when there are several ranks).

    With ``tracker`` (the session's template), each rank also bills its own process tree, the
    other ranks on its host excluded, and keeps only the readings it owns (:func:`ownership_filter`).
    """
    if world_size <= 1 or not process_group_ready():
        return DistributedContext(world_size=max(int(world_size), 1), is_logging_rank=is_logging_rank)
    me = (host_id(), os.getpid())  # hostname + machine id: two hosts named alike stay two
    ranks = all_gather_objects(me)
    if tracker is not None:
        siblings = {pid for host, pid in ranks if host == me[0] and pid != me[1]}
        tracker.processes = ProcessTree(exclude_pids=frozenset(siblings))
        local_rank = sum(1 for host, pid in ranks[: ranks.index(me)] if host == me[0])
        tracker.device_filter = ownership_filter(local_rank)
    return DistributedContext(
        world_size=int(world_size), hosts=len({host for host, _ in ranks}), is_logging_rank=is_logging_rank,
        all_gather=all_gather_objects,
    )


@dataclass(frozen=True)
class OwnedReadings:
    """Which readings this rank contributes, so that the ranks' sum counts every device once (picklable).

    A process-scope reading is this rank's own share (its GPUs, its process tree's CPU time and
    memory): every rank keeps its own, and shares of one device add up when ranks are merged. A
    whole-device CPU or RAM reading (``scope="machine"``, or a meter that bills whole devices) is
    kept by the host's local rank 0 only. GPUs are keyed by UUID: a whole GPU reported by two
    ranks is counted once when the ranks are merged.

    Example:
        >>> cpu = DeviceCounter("cpu:0", "cpu", 1.0, "counter", "rapl")
        >>> OwnedReadings(1)(cpu), OwnedReadings(0)(cpu)
        (False, True)
    """

    local_rank: int

    def __call__(self, device: DeviceCounter) -> bool:
        return device.component == "gpu" or device.scope == "process" or self.local_rank == 0


def ownership_filter(local_rank: int) -> Callable[[DeviceCounter], bool]:
    """The tracker's ``device_filter`` for the rank with this local rank (see :class:`OwnedReadings`)."""
    return OwnedReadings(local_rank)


def bind_device(tracker: EnergyTracker, device: Callable[[], Any]) -> None:
    """Tell ``tracker`` the framework's device: its queue is synchronised at window boundaries, and
    its UUID is the NVML meter's fallback when NVML's process lists show no PID of ours.

    Args:
        device: Returns the torch device this rank trains on (asked lazily).
    """
    try:
        tracker.synchronize = torch_synchronizer(device())
    except Exception:
        tracker.synchronize = None
    tracker.framework_gpus = lambda: gpu_uuids(device())


def gpu_uuids(device: Any) -> list[str]:
    """The UUID of a CUDA ``device`` as torch spells it (the NVML meter normalises it); [] otherwise.

    Never initialises CUDA: a process that has not touched it holds no GPU.
    """
    try:
        device = torch.device(device)
        if device.type != "cuda" or not torch.cuda.is_initialized():
            return []
        return [str(torch.cuda.get_device_properties(device).uuid)]
    except Exception:
        return []
