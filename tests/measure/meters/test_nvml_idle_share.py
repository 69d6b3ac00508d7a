"""A GPU shared with another process while both are idle: the idle power is split by contexts.

Seen on an H200 (benchmarks/gpu_share.py): NVML's per-process utilisation buffer still held this
process's warm-up samples when the tracker opened, so the first share was 100 %, and since idle
processes are never sampled, that stale share billed two idle contexts' power to this one.
"""

from __future__ import annotations

import os

import pytest

from mlflow_green.measure.attribution import Attribution, ProcessTree
from mlflow_green.measure.meters.nvml import NvmlMeter
from mlflow_green.measure.meters.nvml_billing import IDLE_AFTER_S
from mlflow_green.testing import FakeGPU, FakeNVML, FakeProcess, ManualClock

ME = os.getpid()
NEIGHBOUR = 1  # exists, not ours
POWER_W = 200.0


def _bill_j(gpu: FakeGPU, clock: ManualClock, *, open_s: float, until_s: float) -> tuple[float, str]:
    """Open at ``open_s`` and read there (as the tracker's start does), poll every 0.1 s, read at the end."""
    meter = NvmlMeter(nvml=FakeNVML([gpu], clock=clock), environ={})
    meter.attribute(Attribution("process", ProcessTree()))
    clock.set(open_s)
    meter.open(open_s)
    start_j = sum(r.energy_j for r in meter.read(open_s))
    for tick in range(round(open_s * 10) + 1, round(until_s * 10)):
        clock.set(tick / 10)
        meter.poll(clock())
    clock.set(until_s)
    (reading,) = meter.read(until_s)
    return reading.energy_j - start_j, reading.share


def test_a_share_left_from_before_the_tracker_opened_does_not_bill_two_idle_contexts_to_us() -> None:
    warm_up = FakeProcess(ME, sm_util=lambda t_s: 100.0 if t_s < 1.0 else 0.0)  # busy, then idle
    gpu = FakeGPU("GPU-idle", power_w=POWER_W, processes=[warm_up, FakeProcess(NEIGHBOUR)])
    energy_j, share = _bill_j(gpu, ManualClock(), open_s=2.0, until_s=12.0)
    assert energy_j == pytest.approx(POWER_W * 10.0 / 2, rel=0.01)  # half: two idle contexts
    assert share == "gpu-utilisation"


def test_once_both_processes_are_idle_the_last_busy_share_stops_applying() -> None:
    ours = FakeProcess(ME, sm_util=lambda t_s: 100.0 if t_s < 5.0 else 0.0)  # trains 5 s, then idles
    gpu = FakeGPU("GPU-idle", power_w=POWER_W, processes=[ours, FakeProcess(NEIGHBOUR)])
    energy_j, _ = _bill_j(gpu, ManualClock(), open_s=0.0, until_s=15.0)
    # ours alone busy until 5 s (the last sample at 4.9 s), then idle for IDLE_AFTER_S at the
    # busy share, then half of the idle power; the very first 0.1 s, before a sample, at half
    busy_s = 4.9 + IDLE_AFTER_S - 0.1
    expected_j = POWER_W * (0.1 * 0.5 + busy_s + (15.0 - 0.1 - busy_s) * 0.5)
    assert energy_j == pytest.approx(expected_j, abs=POWER_W * 0.2)
    assert energy_j < POWER_W * (5.0 + 10.0 * 0.5 + 2 * IDLE_AFTER_S)  # not the 100 % share throughout


def test_busy_sharing_keeps_its_utilisation_share_between_sparse_samples() -> None:
    gpu = FakeGPU(
        "GPU-busy",
        power_w=POWER_W,
        process_sample_period_s=0.5,  # sampled more rarely than the thread polls
        processes=[FakeProcess(ME, sm_util=30.0), FakeProcess(NEIGHBOUR, sm_util=70.0)],
    )
    energy_j, share = _bill_j(gpu, ManualClock(), open_s=0.0, until_s=10.0)
    assert energy_j == pytest.approx(POWER_W * 10.0 * 0.3, rel=0.03)
    assert share == "gpu-utilisation"
