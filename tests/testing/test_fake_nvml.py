"""The shipped FakeNVML speaks real pynvml: same names, signatures, error classes and codes, behaviour."""

from __future__ import annotations

import inspect
import os

import pynvml
import pytest

from mlflow_green.testing import FakeFault, FakeGPU, FakeMIG, FakeNVML, FakeProcess, ManualClock
from mlflow_green.testing import fake_nvml_errors as fake_errors

FUNCTIONS = [name for name in dir(FakeNVML) if name.startswith("nvml")]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_exists_in_pynvml_with_the_same_parameters(name: str) -> None:
    real = getattr(pynvml, name)
    fake = getattr(FakeNVML, name)
    real_params = [p for p in inspect.signature(real).parameters if p != "version"]
    fake_params = [p for p in inspect.signature(fake).parameters if p != "self"]
    assert len(fake_params) == len(real_params), (name, real_params, fake_params)


@pytest.mark.parametrize("name", sorted(fake_errors.ERROR_CLASSES))
def test_error_classes_carry_pynvmls_codes_and_messages(name: str) -> None:
    fake_cls = fake_errors.ERROR_CLASSES[name]
    real_cls = getattr(pynvml, name)
    assert fake_cls().value == real_cls().value
    if real_cls().value in pynvml.NVMLError._errcode_to_string:  # else pynvml asks the driver's library
        assert str(fake_cls()) == str(real_cls())
    assert type(fake_errors.NVMLError(real_cls().value)) is fake_cls  # NVMLError(code) -> the subclass
    assert getattr(FakeNVML(), name) is fake_cls  # also attributes of the module, as in pynvml


def test_result_fields_are_pynvmls() -> None:
    clock = ManualClock()
    mig = FakeMIG("MIG-1", processes=[FakeProcess(7, used_memory_bytes=1 << 20)])
    nvml = FakeNVML(
        [FakeGPU("GPU-0", processes=[FakeProcess(os.getpid(), sm_util=40.0)]), FakeGPU("GPU-1", mig_devices=[mig])],
        clock=clock,
    )
    nvml.nvmlInit()
    gpu0, gpu1 = nvml.nvmlDeviceGetHandleByIndex(0), nvml.nvmlDeviceGetHandleByIndex(1)
    (proc,) = nvml.nvmlDeviceGetComputeRunningProcesses(gpu0)
    fields = {f for f, _ in pynvml.c_nvmlProcessInfo_v3_t._fields_} - {"usedGpuCcProtectedMemory"}
    assert fields <= set(vars(proc))
    clock.set(1.0)
    sample = nvml.nvmlDeviceGetProcessUtilization(gpu0, 0)[-1]
    assert {f for f, _ in pynvml.c_nvmlProcessUtilizationSample_t._fields_} == set(vars(sample))
    assert (sample.pid, sample.smUtil) == (os.getpid(), 40)
    with pytest.raises(fake_errors.NVMLError_NotFound):  # nothing newer than the last sample
        nvml.nvmlDeviceGetProcessUtilization(gpu0, sample.timeStamp)
    assert {f for f, _ in pynvml.c_nvmlUtilization_t._fields_} == set(vars(nvml.nvmlDeviceGetUtilizationRates(gpu0)))
    mig_handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu1, 0)
    assert {f for f, _ in pynvml.c_nvmlDeviceAttributes._fields_} == set(vars(nvml.nvmlDeviceGetAttributes(mig_handle)))


def test_per_process_utilisation_is_a_buffer_of_busy_samples_since_the_timestamp() -> None:
    clock = ManualClock()
    ours, idle = FakeProcess(os.getpid(), sm_util=lambda t_s: 90.0 if t_s < 1.0 else 0.0), FakeProcess(7)
    nvml = FakeNVML([FakeGPU("GPU-0", processes=[ours, idle], process_sample_period_s=0.25)], clock=clock,
                    unix_epoch_s=100.0)
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    clock.set(3.0)
    samples = nvml.nvmlDeviceGetProcessUtilization(handle, 0)  # 0: the whole buffer, from before too
    assert [(s.pid, s.timeStamp, s.smUtil) for s in samples] == [
        (os.getpid(), round((100.0 + t_s) * 1e6), 90) for t_s in (0.0, 0.25, 0.5, 0.75)
    ]  # the idle process is never sampled, nor ours once idle
    with pytest.raises(fake_errors.NVMLError_NotFound):
        nvml.nvmlDeviceGetProcessUtilization(handle, samples[-1].timeStamp)
    clock.set(100.0)  # the buffer keeps PROCESS_SAMPLE_BUFFER periods: the busy second has left it
    with pytest.raises(fake_errors.NVMLError_NotFound):
        nvml.nvmlDeviceGetProcessUtilization(handle, 0)


def test_mig_devices_behave_like_real_ones() -> None:
    nvml = FakeNVML([FakeGPU("GPU-p", mig_devices=[FakeMIG("MIG-a", processes=[FakeProcess(11)])]), FakeGPU("GPU-q")])
    nvml.nvmlInit()
    parent, plain = nvml.nvmlDeviceGetHandleByIndex(0), nvml.nvmlDeviceGetHandleByIndex(1)
    assert nvml.nvmlDeviceGetMigMode(parent) == [1, 1]
    with pytest.raises(fake_errors.NVMLError_NotSupported):
        nvml.nvmlDeviceGetMigMode(plain)  # a GPU without MIG
    mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 0)
    with pytest.raises(fake_errors.NVMLError_NotFound):
        nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 1)  # an empty slot
    assert nvml.nvmlDeviceIsMigDeviceHandle(mig) and not nvml.nvmlDeviceIsMigDeviceHandle(parent)
    assert nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig) == parent
    assert nvml.nvmlDeviceGetHandleByUUID("MIG-a") == mig
    for function in ("nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit"):
        with pytest.raises(fake_errors.NVMLError_NotSupported):  # energy and power belong to the parent
            getattr(nvml, function)(mig)
    assert [p.pid for p in nvml.nvmlDeviceGetComputeRunningProcesses(parent)] == [11]  # the parent lists its slices'
    assert nvml.nvmlDeviceGetComputeRunningProcesses(mig)[0].gpuInstanceId == 1


def test_faults_resets_and_update_periods() -> None:
    clock = ManualClock()
    gpu = FakeGPU(
        "GPU-f",
        power_w=100.0,
        update_period_s=0.1,
        counter_resets_at_s=(5.0,),
        faults=[FakeFault(fake_errors.NVML_ERROR_TIMEOUT, from_s=2.0, until_s=3.0, calls=2)],
    )
    nvml = FakeNVML([gpu], clock=clock)
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    clock.set(0.15)
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(handle) == gpu.energy_offset_mj + 10_000  # last tick at 0.1 s
    clock.set(2.5)
    for _ in range(2):
        with pytest.raises(fake_errors.NVMLError_Timeout) as caught:
            nvml.nvmlDeviceGetName(handle)
        assert caught.value.value == pynvml.NVML_ERROR_TIMEOUT
    assert nvml.nvmlDeviceGetName(handle)  # the glitch lasted two calls
    clock.set(5.5)
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(handle) == 50_000  # restarted from zero at 5 s
    nvml.nvmlShutdown()
    with pytest.raises(fake_errors.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetCount()
