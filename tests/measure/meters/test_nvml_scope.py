"""scope="process": only the GPUs this process tree holds a context on, by its share when shared."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from mlflow_green.measure.attribution import Attribution, ProcessTree
from mlflow_green.measure.meters.nvml import NvmlMeter
from mlflow_green.measure.readings import DeviceCounter, Snapshot
from mlflow_green.testing import FakeFault, FakeGPU, FakeNVML, FakeProcess, ManualClock
from mlflow_green.testing.fake_nvml_errors import NVML_ERROR_NO_PERMISSION

ME = os.getpid()
NOT_A_PID = 4_000_000  # above any pid_max: lives in no PID namespace we can see
OTHER_JOB = 1  # a process that exists but is not ours (init, or the container's first process)


def _host(*gpus: FakeGPU) -> tuple[FakeNVML, ManualClock]:
    clock = ManualClock()
    return FakeNVML(list(gpus), clock=clock), clock


def _meter(nvml: FakeNVML, *, scope: str = "process", tree: ProcessTree | None = None, **environ: str) -> NvmlMeter:
    meter = NvmlMeter(nvml=nvml, environ=environ)
    meter.attribute(Attribution(scope, tree or ProcessTree()))  # type: ignore[arg-type]
    return meter


def _run(meter: NvmlMeter, clock: ManualClock, until_s: float, *, poll_every_s: float = 0.1) -> dict[str, DeviceCounter]:
    """Open at 0, poll as the tracker's thread would, read at ``until_s``."""
    meter.open(0.0)
    steps = round(until_s / poll_every_s)
    for i in range(1, steps):
        clock.set(i * poll_every_s)
        meter.poll(clock())
    clock.set(until_s)
    return {r.device_id: r for r in meter.read(until_s)}


def test_an_eight_gpu_host_bills_only_the_gpu_this_training_uses() -> None:
    """Today: a job on cuda:0 of an 8-GPU host without CUDA_VISIBLE_DEVICES is billed all 8."""
    gpus = [FakeGPU(f"GPU-{i:08x}", power_w=300.0 if i == 0 else 120.0) for i in range(8)]
    gpus[0].processes = [FakeProcess(ME)]
    for gpu in gpus[1:5]:
        gpu.processes = [FakeProcess(OTHER_JOB)]  # other people's jobs; 5-7 idle
    nvml, clock = _host(*gpus)
    readings = _run(_meter(nvml), clock, 130.0)
    assert list(readings) == ["gpu:GPU-00000000"]
    reading = readings["gpu:GPU-00000000"]
    assert reading.energy_j == pytest.approx(300.0 * 130.0)  # 39 kJ, not 39 + 7 × 15.6 = 148 kJ
    assert (reading.scope, reading.share, reading.provenance) == ("process", "", "counter")


def test_the_context_appears_after_start_and_the_billed_set_is_decided_from_the_reads() -> None:
    gpu = FakeGPU("GPU-lazy", power_w=200.0, processes=[FakeProcess(ME, start_s=5.0)])
    idle = FakeGPU("GPU-idle", power_w=50.0)
    nvml, clock = _host(gpu, idle)
    meter = _meter(nvml)
    meter.open(0.0)
    clock.set(2.0)
    before = Snapshot(2.0, meter.read(2.0))
    assert before.devices == ()  # no context yet: nothing billed so far
    clock.set(10.0)
    after = Snapshot(10.0, meter.read(10.0))
    # Nobody else used it before our context appeared: its energy since start is ours.
    assert (after - before).energy_j == pytest.approx(2000.0)
    report = {d["device_id"]: d for d in meter.report()["devices"]}
    assert report["gpu:GPU-lazy"]["billed"] and "holds a context" in report["gpu:GPU-lazy"]["reason"]
    assert not report["gpu:GPU-idle"]["billed"]
    assert report["gpu:GPU-idle"]["reason"].startswith("NVML never listed any process on it")


def test_energy_another_job_spent_before_our_context_appeared_is_not_ours() -> None:
    gpu = FakeGPU(
        "GPU-busy",
        power_w=250.0,
        processes=[FakeProcess(OTHER_JOB, end_s=4.0), FakeProcess(ME, start_s=6.0)],
    )
    nvml, clock = _host(gpu)
    meter = _meter(nvml)
    meter.open(0.0)
    clock.set(3.0)
    assert meter.read(3.0) == ()  # the other job is seen: its energy so far is not pending for us
    clock.set(10.0)
    (reading,) = meter.read(10.0)
    assert reading.energy_j == pytest.approx(250.0 * 7.0)  # from the read that saw the other job


def test_a_shared_gpu_is_billed_by_this_trees_share_of_utilisation() -> None:
    gpu = FakeGPU(
        "GPU-shared",
        power_w=400.0,
        processes=[FakeProcess(ME, sm_util=60.0), FakeProcess(OTHER_JOB, sm_util=20.0)],
    )
    nvml, clock = _host(gpu)
    meter = _meter(nvml)
    meter.open(0.0)
    clock.set(1.0)
    assert meter.read(1.0)[0].share == "gpu-utilisation"  # sharing seen: the thread samples shares
    for i in range(11, 100):
        clock.set(i / 10)
        meter.poll(clock())
    assert meter.poll_interval_s == pytest.approx(meter.sample_interval_s)  # while the sharing lasts
    clock.set(10.0)
    (reading,) = meter.read(10.0)
    assert reading.energy_j == pytest.approx(400.0 * 10.0 * 60 / (60 + 20))
    assert (reading.scope, reading.share, reading.provenance) == ("process", "gpu-utilisation", "counter")


def test_a_shared_gpu_without_per_process_utilisation_is_billed_whole_and_labelled() -> None:
    gpu = FakeGPU(
        "GPU-old", power_w=100.0, process_utilisation=False, processes=[FakeProcess(ME), FakeProcess(OTHER_JOB, kind="graphics")]
    )
    nvml, clock = _host(gpu)
    readings = _run(_meter(nvml), clock, 10.0)
    reading = readings["gpu:GPU-old"]
    assert reading.energy_j == pytest.approx(1000.0)
    assert reading.share == "shared-whole"
    assert "shared with other processes" in reading.note


def test_a_container_with_host_pids_falls_back_to_the_frameworks_device() -> None:
    """The DDP case "torch's UUID does not match NVML's": torch spells it without GPU-, NVML lists a host PID."""
    gpus = [FakeGPU("GPU-aaaa1111", power_w=90.0), FakeGPU("GPU-bbbb2222", power_w=210.0)]
    gpus[0].processes = [FakeProcess(NOT_A_PID + 1)]
    gpus[1].processes = [FakeProcess(NOT_A_PID)]
    nvml, clock = _host(*gpus)
    meter = NvmlMeter(nvml=nvml, environ={})
    meter.attribute(Attribution("process", ProcessTree(), framework_gpus=lambda: ["BBBB2222"]))
    readings = _run(meter, clock, 10.0)
    assert list(readings) == ["gpu:GPU-bbbb2222"]
    reading = readings["gpu:GPU-bbbb2222"]
    assert reading.energy_j == pytest.approx(2100.0)
    assert reading.share == "framework-device" and "framework reports using it" in reading.note


def test_host_pids_without_a_framework_hint_are_billed_whole_as_unattributed() -> None:
    gpu = FakeGPU("GPU-cont", power_w=150.0, processes=[FakeProcess(NOT_A_PID)])
    nvml, clock = _host(gpu)
    readings = _run(_meter(nvml), clock, 4.0)
    reading = readings["gpu:GPU-cont"]
    assert reading.energy_j == pytest.approx(600.0)
    assert reading.share == "unattributed" and "outside this PID namespace" in reading.note


def test_scope_machine_bills_every_visible_gpu_whole() -> None:
    gpus = [FakeGPU("GPU-m0", power_w=100.0), FakeGPU("GPU-m1", power_w=200.0, processes=[FakeProcess(OTHER_JOB)])]
    nvml, clock = _host(*gpus)
    readings = _run(_meter(nvml, scope="machine"), clock, 10.0)
    assert {k: r.energy_j for k, r in readings.items()} == {"gpu:GPU-m0": pytest.approx(1000.0), "gpu:GPU-m1": pytest.approx(2000.0)}
    assert {r.scope for r in readings.values()} == {"machine"}


@pytest.fixture
def two_ranks() -> Iterator[list[int]]:
    """Two real child processes, as Lightning's ddp launcher starts ranks 1 and 2 under rank 0."""
    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
    try:
        yield [c.pid for c in children]
    finally:
        for child in children:
            child.kill()
            child.wait()


def test_rank_zero_without_a_gpu_claims_none_of_the_other_ranks_gpus(two_ranks: list[int]) -> None:
    """Today: local rank 0 with no GPU claims every GPU on the host (131 kJ instead of 41 kJ)."""
    gpus = [FakeGPU(f"GPU-r{i}", power_w=100.0) for i in range(4)]
    gpus[1].processes = [FakeProcess(two_ranks[0])]
    gpus[2].processes = [FakeProcess(two_ranks[1])]
    gpus[3].processes = [FakeProcess(OTHER_JOB)]
    nvml, clock = _host(*gpus)
    whole_tree = _run(_meter(nvml), clock, 5.0)
    assert sorted(whole_tree) == ["gpu:GPU-r1", "gpu:GPU-r2"]  # the children are in rank 0's tree...
    nvml, clock = _host(*gpus)
    own = _run(_meter(nvml, tree=ProcessTree(exclude_pids=frozenset(two_ranks))), clock, 5.0)
    assert own == {}  # ...unless excluded, as the Lightning callback does: rank 0 bills no GPU


def test_another_jobs_gpu_is_reported_as_not_this_trainings() -> None:
    nvml, clock = _host(FakeGPU("GPU-mine", processes=[FakeProcess(ME)]), FakeGPU("GPU-theirs", processes=[FakeProcess(OTHER_JOB)]))
    meter = _meter(nvml)
    _run(meter, clock, 2.0)
    report = {d["device_id"]: d for d in meter.report()["devices"]}
    assert report["gpu:GPU-theirs"] == report["gpu:GPU-theirs"] | {"billed": False, "reason": "no process of this training has held a context on it"}


class _MismatchError(Exception):
    """pynvml's NVMLLibraryMismatchError: the driver predates the ``_v3`` process-list calls."""


_MismatchError.__name__ = "NVMLLibraryMismatchError"


class _OldDriver(FakeNVML):
    """A driver with only the ``_v2`` running-process calls."""

    def nvmlDeviceGetComputeRunningProcesses(self, handle: object) -> list:  # noqa: N802
        raise _MismatchError("Unversioned function called and the pyNVML version does not match the NVML lib version")

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: object) -> list:  # noqa: N802
        return FakeNVML.nvmlDeviceGetComputeRunningProcesses(self, handle)


def test_an_older_driver_is_asked_through_the_v2_process_list() -> None:
    clock = ManualClock()
    nvml = _OldDriver([FakeGPU("GPU-old", power_w=100.0, processes=[FakeProcess(ME)])], clock=clock)
    readings = _run(_meter(nvml), clock, 3.0)
    assert readings["gpu:GPU-old"].energy_j == pytest.approx(300.0)


def test_process_lists_that_keep_failing_bill_the_gpu_whole_and_say_why() -> None:
    lists = frozenset({"nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"})
    gpu = FakeGPU("GPU-nolist", power_w=100.0, faults=[FakeFault(NVML_ERROR_NO_PERMISSION, functions=lists)])
    nvml, clock = _host(gpu)
    meter = _meter(nvml)
    meter.open(0.0)
    clock.set(1.0)
    assert meter.read(1.0) == ()  # one failure could be a glitch
    clock.set(4.0)
    (reading,) = meter.read(4.0)
    assert reading.energy_j == pytest.approx(400.0)
    assert reading.share == "unattributed" and "process lists cannot be read (NVMLError_NoPermission" in reading.note
