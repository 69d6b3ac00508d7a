"""Window boundaries wait for queued GPU work (torch, TensorFlow); never initialise CUDA to do it."""

from __future__ import annotations

import pytest
import torch

from mlflow_green import EnergyTracker
from mlflow_green.integrations._device_sync import keras_synchronizer, torch_synchronizer
from mlflow_green.integrations._torch_distributed import bind_device, gpu_uuids


def test_cpu_training_needs_no_synchronisation() -> None:
    assert torch_synchronizer("cpu") is None
    tracker = EnergyTracker()
    bind_device(tracker, lambda: torch.device("cpu"))  # as the Lightning and Hugging Face callbacks do
    assert tracker.synchronize is None and tracker.framework_gpus is not None and list(tracker.framework_gpus()) == []
    assert keras_synchronizer() is None  # this machine has no GPU, whatever the Keras backend


def test_a_cuda_device_is_synchronised_only_once_cuda_is_initialised(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    tracker = EnergyTracker()
    bind_device(tracker, lambda: torch.device("cuda", 1))
    synchronize = tracker.synchronize
    assert synchronize is not None
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    synchronize()  # a process that has not touched CUDA yet: nothing to wait for, and CUDA stays cold
    assert calls == [] and gpu_uuids(torch.device("cuda", 1)) == []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    synchronize()
    assert calls == [torch.device("cuda", 1)]


def test_keras_backends_on_a_gpu_get_their_barrier(monkeypatch: pytest.MonkeyPatch) -> None:
    tf = pytest.importorskip("tensorflow")  # the keras extra (an environment with the lightning extra alone lacks it)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert keras_synchronizer("torch") is not None
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["/physical_device:GPU:0"])
    assert keras_synchronizer("tensorflow") is tf.test.experimental.sync_devices
    assert keras_synchronizer("jax") is None  # no device-wide barrier: documented as not synchronised
