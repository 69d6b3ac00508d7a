"""CUDA_VISIBLE_DEVICES read as CUDA reads it: indices, UUIDs and prefixes, MIG in both forms, the list's ends."""

from __future__ import annotations

import pytest

from mlflow_green.measure.meters.cuda_visible import MigRef, parse_visible_devices, resolve_visible
from mlflow_green.measure.meters.nvml import NvmlMeter
from mlflow_green.testing import FakeGPU, FakeMIG, FakeNVML, ManualClock

GPUS = ["GPU-8932f937-d72c-4106-c12f-20bd9faed9f6", "GPU-89aa0000-0000-0000-0000-000000000001", "GPU-c0ffee00-1111-2222-3333-444455556666"]
MIGS = [
    MigRef("MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f", parent=2, gpu_instance_id=1, compute_instance_id=0),
    MigRef("MIG-0d1e2f3a-42e4-5de3-91c7-45d71c87eb3f", parent=2, gpu_instance_id=2, compute_instance_id=0),
]


def _visible(value: str | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    found = resolve_visible(parse_visible_devices(value), GPUS, MIGS)
    return found.gpus, found.migs


@pytest.mark.parametrize(
    ("value", "gpus"),
    [
        (None, (0, 1, 2)),  # unset: every GPU
        ("", ()),  # empty: none
        ("2,0", (2, 0)),  # CUDA's order is the list's
        (" 1 , 0", (1, 0)),  # whitespace around indices is ignored
        ("1gpu,0", (1, 0)),  # strtoul: the leading number counts
        ("0,2,-1,1", (0, 2)),  # CUDA's documented example: -1 ends the list
        ("0,7,1", (0,)),  # an index past the last GPU ends it
        ("0,abc,1", (0,)),  # so does a non-number
        ("0,1,", (0, 1)),  # a trailing comma ends it harmlessly
        ("0,1,0", ()),  # a device listed twice: CUDA sees no GPU at all
        ("0,GPU-c0ffee00", (0,)),  # an index list does not switch to UUIDs
        ("8932", ()),  # a UUID without "GPU-" is read as index 8932
        (GPUS[2], (2,)),  # a full UUID
        ("GPU-c0ff,GPU-8932", (2, 0)),  # unique prefixes
        ("GPU-89", ()),  # ambiguous prefix: matches two GPUs, ends the list at once
        ("GPU-c0ff,GPU-89,GPU-8932", (2,)),  # ... wherever it is
        ("GPU-c0ff,GPU-nope,GPU-8932", (2,)),  # an unknown UUID ends the list
        ("GPU-c0ff,1", (2,)),  # a UUID list does not switch to indices
        ("GPU-c0ff,GPU-c0ffee00", ()),  # two prefixes of one GPU: a duplicate
        ("GPU-c0ff,GPU-c0ff", ()),  # the same entry twice
    ],
)
def test_whole_gpus(value: str | None, gpus: tuple[int, ...]) -> None:
    assert _visible(value) == (gpus, ())


@pytest.mark.parametrize(
    ("value", "migs"),
    [
        ("MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f", (0,)),  # driver R470+ MIG UUID
        ("MIG-0d1e", (1,)),  # a unique prefix
        (f"MIG-{GPUS[2]}/2/0", (1,)),  # legacy MIG-GPU-<uuid>/<gi>/<ci>
        ("MIG-GPU-c0ffee00/1/0", (0,)),  # ... with a GPU UUID prefix
        (f"MIG-{GPUS[2]}/9/0", ()),  # no such GPU instance
        (f"MIG-{GPUS[0]}/1/0", ()),  # GPU 0 is not in MIG mode
        (f"MIG-{GPUS[2]}/1", ()),  # malformed legacy form
        ("MIG-0d1e,MIG-c6d4", (1,)),  # a CUDA process enumerates one MIG device: the first
        ("MIG-0d1e,MIG-0d1e", ()),  # listed twice: nothing
        (f"MIG-0d1e,MIG-{GPUS[2]}/2/0", ()),  # both forms naming one device: a duplicate
        ("MIG-nope,MIG-0d1e", ()),  # the first invalid entry ends the list
        ("MIG-0d1e,0", (1,)),  # a MIG list does not switch to indices
    ],
)
def test_mig_devices(value: str, migs: tuple[int, ...]) -> None:
    assert _visible(value) == ((), migs)


def test_notes_say_why_entries_were_dropped() -> None:
    assert "ends at" in resolve_visible(parse_visible_devices("0,7"), GPUS).note
    assert "listed twice" in parse_visible_devices("0,0").note
    assert "one MIG device" in resolve_visible(parse_visible_devices("MIG-0d1e,MIG-c6d4"), GPUS, MIGS).note


def test_the_meter_bills_a_mig_slice_named_in_cuda_visible_devices() -> None:
    """Today's bug: a MIG UUID in CUDA_VISIBLE_DEVICES dropped the GPU silently."""
    clock = ManualClock()
    mig = FakeMIG("MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f", compute_slices=3)
    nvml = FakeNVML([FakeGPU(GPUS[0]), FakeGPU(GPUS[2], power_w=350.0, mig_devices=[mig])], clock=clock)
    meter = NvmlMeter(nvml=nvml, environ={"CUDA_VISIBLE_DEVICES": f"MIG-{GPUS[2]}/1/0"})
    assert meter.is_available().available
    meter.open(0.0)
    clock.set(7.0)
    (reading,) = meter.read(7.0)
    assert reading.device_id == f"gpu:{mig.uuid}"
    assert reading.energy_j == pytest.approx(350.0 * 7.0 * 3 / 7)
