"""The NVML handle of the GPU torch calls ``cuda:<index>`` (matched by UUID: the two number GPUs differently
under ``CUDA_VISIBLE_DEVICES``), for the GPU benchmarks (not a benchmark itself)."""

from __future__ import annotations

from typing import Any

from mlflow_green.measure import hardware


def nvml_handle_of(pynvml: Any, torch_device: Any) -> Any:
    """``torch_device``'s NVML handle (``pynvml.nvmlInit()`` called first)."""
    import torch

    uuid = str(torch.cuda.get_device_properties(torch_device).uuid).lower().removeprefix("gpu-")
    return next(
        h
        for h in (pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount()))
        if hardware.text(pynvml.nvmlDeviceGetUUID(h)).lower().removeprefix("gpu-") == uuid
    )
