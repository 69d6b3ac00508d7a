"""MIG: a slice is billed its share of the parent GPU's counter, labelled so; doctor shows how."""

from __future__ import annotations

import json
import os
from functools import partial

import pytest
from click.testing import CliRunner

from mlflow_green.cli import main
from mlflow_green.measure.attribution import Attribution
from mlflow_green.measure.meters.nvml import NvmlMeter
from mlflow_green.measure.readings import Snapshot
from mlflow_green.testing import FakeFault, FakeGPU, FakeMIG, FakeNVML, FakeProcess, ManualClock, registered_meters
from mlflow_green.testing.fake_nvml_errors import NVML_ERROR_NOT_SUPPORTED

ME = os.getpid()
PARENT = "GPU-a100a100-0000-1111-2222-333344445555"
SLICE_A = "MIG-aaaaaaaa-42e4-5de3-91c7-45d71c87eb3f"
SLICE_B = "MIG-bbbbbbbb-42e4-5de3-91c7-45d71c87eb3f"


def _a100(*, ours_on: str = SLICE_A, other_on: str | None = SLICE_B, **gpu: object) -> tuple[FakeNVML, ManualClock]:
    slices = [
        FakeMIG(SLICE_A, name="NVIDIA A100-SXM4-80GB MIG 3g.40gb", gpu_instance_id=1, compute_slices=3),
        FakeMIG(SLICE_B, name="NVIDIA A100-SXM4-80GB MIG 4g.40gb", gpu_instance_id=2, compute_slices=4),
    ]
    for mig in slices:
        if mig.uuid == ours_on:
            mig.processes.append(FakeProcess(ME))
        if mig.uuid == other_on:
            mig.processes.append(FakeProcess(1))
    clock = ManualClock()
    parent = FakeGPU(PARENT, name="NVIDIA A100-SXM4-80GB", power_w=350.0, mig_devices=slices, **gpu)  # type: ignore[arg-type]
    return FakeNVML([parent], clock=clock), clock


def _measure(nvml: FakeNVML, clock: ManualClock, *, scope: str = "process", environ: dict[str, str] | None = None) -> tuple[NvmlMeter, Snapshot, Snapshot]:
    meter = NvmlMeter(nvml=nvml, environ=environ or {})
    meter.attribute(Attribution(scope))  # type: ignore[arg-type]
    meter.open(0.0)
    clock.set(1.0)
    start = Snapshot(1.0, meter.read(1.0))
    clock.set(21.0)
    return meter, start, Snapshot(21.0, meter.read(21.0))


def test_the_slice_this_training_holds_is_billed_its_share_of_the_parent_counter() -> None:
    nvml, clock = _a100()
    meter, start, end = _measure(nvml, clock)
    window = end - start
    (slice_a,) = window.devices
    assert slice_a.device_id == f"gpu:{SLICE_A}"
    assert slice_a.energy_j == pytest.approx(350.0 * 20.0 * 3 / 7)
    assert (slice_a.provenance, slice_a.share, slice_a.scope) == ("counter", "mig", "process")
    assert slice_a.basis == "counter, apportioned by mig share"
    assert not window.estimated and window.apportioned
    assert "3/7 of GPU-a100a100" in slice_a.note
    assert meter.label("gpu", "counter") == "nvml-counter*mig"  # as green.meters shows it
    report = {d["device_id"]: d for d in meter.report()["devices"]}
    assert report[f"gpu:{SLICE_B}"]["billed"] is False  # another job's slice
    assert report[f"gpu:{SLICE_A}"]["fraction_of_gpu"] == pytest.approx(3 / 7)


def test_a_slice_named_in_cuda_visible_devices_under_machine_scope_is_still_a_share() -> None:
    nvml, clock = _a100()
    _, start, end = _measure(nvml, clock, scope="machine", environ={"CUDA_VISIBLE_DEVICES": SLICE_B})
    (slice_b,) = (end - start).devices
    assert slice_b.device_id == f"gpu:{SLICE_B}" and slice_b.energy_j == pytest.approx(350.0 * 20.0 * 4 / 7)
    assert (slice_b.scope, slice_b.share) == ("machine", "mig")


def test_a_gpu_in_mig_mode_under_machine_scope_is_billed_whole() -> None:
    nvml, clock = _a100()
    _, start, end = _measure(nvml, clock, scope="machine")
    (whole,) = (end - start).devices
    assert whole.device_id == f"gpu:{PARENT}" and whole.energy_j == pytest.approx(7000.0) and whole.share == ""


def test_unreadable_slice_sizes_split_the_parent_evenly_and_say_so() -> None:
    nvml, clock = _a100()
    for mig in nvml.gpus[0].mig_devices:
        mig.faults.append(FakeFault(NVML_ERROR_NOT_SUPPORTED, functions=frozenset({"nvmlDeviceGetAttributes"})))
    _, start, end = _measure(nvml, clock)
    (slice_a,) = (end - start).devices
    assert slice_a.energy_j == pytest.approx(3500.0)
    assert "split evenly among its 2 MIG devices" in slice_a.note


def test_a_slice_shared_with_another_process_is_billed_whole_and_labelled() -> None:
    nvml, clock = _a100(ours_on=SLICE_A, other_on=SLICE_A)  # no per-process utilisation inside MIG
    _, start, end = _measure(nvml, clock)
    (slice_a,) = (end - start).devices
    assert slice_a.energy_j == pytest.approx(3000.0)
    assert slice_a.share == "mig+shared-whole"


def test_availability_describes_each_slice_and_how_it_is_billed() -> None:
    nvml, _ = _a100()
    reason = NvmlMeter(nvml=nvml, environ={"CUDA_VISIBLE_DEVICES": f"MIG-{PARENT}/1/0"}).is_available().reason
    assert reason.startswith("NVML: 1 device: NVIDIA A100-SXM4-80GB MIG 3g.40gb")
    assert "MIG slice: 3/7 of GPU-a100a100" in reason and "energy counter" in reason


def test_doctor_reports_mig_slices_instead_of_no_gpu() -> None:
    nvml, _ = _a100()
    fake = partial(NvmlMeter, nvml=nvml, environ={"CUDA_VISIBLE_DEVICES": SLICE_A})
    fake.name, fake.priority = "nvml", 100  # type: ignore[attr-defined]
    with registered_meters(fake):
        result = CliRunner().invoke(main, ["doctor", "--json"])
        text = CliRunner().invoke(main, ["doctor"]).output
    report = json.loads(result.output)
    nvml_line = next(m for m in report["meters"] if m["name"] == "nvml")
    assert nvml_line["available"] and "no NVIDIA GPU visible" not in nvml_line["reason"]
    assert "MIG slice: 3/7" in nvml_line["reason"]
    assert report["components"]["gpu"]["meter"] == "nvml"
    assert "MIG slice" in text
    assert "billed: the GPUs (or MIG slices: their share of the parent GPU) on which the training holds" in text
