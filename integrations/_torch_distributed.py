"""What a torch training's ranks share with the training session: a collective, device ownership, hosts.

Used by the Hugging Face callback (the Trainer's ranks under torchrun / accelerate); the same
rules as the Lightning callback's: each rank measures only its own GPU (by UUID), CPU and RAM
once per host (local rank 0), and rank zero logs.

Example::

    ctx = distributed_context(world_size=2, is_logging_rank=rank == 0)   # None-safe in one process
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mlflow_green.measure.host import host_id
from mlflow_green.measure.readings import DeviceCounter
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


def distributed_context(*, world_size: int, is_logging_rank: bool) -> DistributedContext:
    """The session's view of the ranks (hosts counted with one collective when there are several ranks)."""
    if world_size <= 1 or not process_group_ready():
        return DistributedContext(world_size=max(int(world_size), 1), is_logging_rank=is_logging_rank)
    hosts = all_gather_objects(host_id())  # hostname + machine id: two hosts named alike stay two
    return DistributedContext(
        world_size=int(world_size), hosts=len(set(hosts)), is_logging_rank=is_logging_rank,
        all_gather=all_gather_objects,
    )


def ownership_filter(local_rank: int, own_gpu: str | None) -> Callable[[DeviceCounter], bool]:
    """Each rank measures only what it owns: its GPU; CPU and RAM once per host (local rank 0)."""

    def owned(device: DeviceCounter) -> bool:
        if device.component == "gpu":
            if own_gpu is None:  # unknown (CPU training): the host's first rank takes them
                return local_rank == 0
            return device.device_id == own_gpu
        return local_rank == 0

    return owned


def gpu_uuid(device: Any) -> str | None:
    """The meter id (``gpu:GPU-…``) of a CUDA ``device``; None for a CPU device or when unknown."""
    try:
        device = torch.device(device)
        if device.type != "cuda":
            return None
        uuid = str(torch.cuda.get_device_properties(device).uuid)
        return f"gpu:{uuid if uuid.startswith('GPU-') else 'GPU-' + uuid}"
    except Exception:
        return None


def batch_size(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor (dict, tuple or tensor); 0 if unknown."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() > 0 else 0
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        size = batch_size(item)
        if size:
            return size
    return 0
