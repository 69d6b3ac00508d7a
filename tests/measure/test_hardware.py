"""Host hardware facts: CPU model, sockets, RAM, GPU names."""

from __future__ import annotations

from mlflow_green.measure import hardware
from mlflow_green.testing import FakeGPU, FakeNVML


def test_cpu_model_and_sockets() -> None:
    model = hardware.cpu_model()
    assert isinstance(model, str) and model
    assert hardware.cpu_sockets() >= 1


def test_this_machine_never_raises() -> None:
    assert hardware.total_ram_bytes() > 0


def test_gpu_names_with_fake_nvml() -> None:
    nvml = FakeNVML([FakeGPU("GPU-1", name="NVIDIA A100"), FakeGPU("GPU-2", name="NVIDIA A100")])
    assert hardware.gpu_names(nvml) == ["NVIDIA A100", "NVIDIA A100"]
    assert nvml.initialised == 0


def test_gpu_names_without_driver_is_empty() -> None:
    assert hardware.gpu_names(FakeNVML([FakeGPU("GPU-1")], driver=False)) == []
    assert isinstance(hardware.gpu_names(), list)
