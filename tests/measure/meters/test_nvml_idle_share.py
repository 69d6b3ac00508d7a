"""A GPU shared with another process: idle spells, sparse samples, jobs arriving and leaving mid-window.

Seen on an H200 (benchmarks/gpu_share.py): NVML's per-process utilisation buffer still held this
process's warm-up samples when the tracker opened, so the first share was 100 %, and since idle
processes are never sampled, that stale share billed two idle contexts' power to this one. The
other cases came from a review of that fix: the driver samples every 1/6 s to 1 s by product, a
process that leaves or arrives between two window boundaries, errors of the per-process query.

The meter is driven as the tracker's thread drives it: polled at the interval it asks for, read
at the window boundaries given.
"""

from __future__ import annotations

import os

import pytest

from mlflow_green.measure.attribution import Attribution, ProcessTree
from mlflow_green.measure.meters.nvml import NvmlMeter
from mlflow_green.measure.meters.nvml_share import IDLE_AFTER_S
from mlflow_green.testing import FakeFault, FakeGPU, FakeNVML, FakeProcess, ManualClock
from mlflow_green.testing.fake_nvml_errors import NVML_ERROR_NO_PERMISSION, NVML_ERROR_UNKNOWN

ME = os.getpid()
NEIGHBOUR = 1  # exists, not ours
POWER_W = 200.0
NO_DEVICE_UTILISATION = {"utilisation_pct": None}  # nvmlDeviceGetUtilizationRates not supported


def _windows_j(gpu: FakeGPU, reads_s: list[float]) -> tuple[list[float], NvmlMeter]:
    """Open and read at ``reads_s[0]``, then each window's billed joules up to each later read."""
    clock = ManualClock()
    meter = NvmlMeter(nvml=FakeNVML([gpu], clock=clock), environ={})
    meter.attribute(Attribution("process", ProcessTree()))
    clock.set(reads_s[0])
    meter.open(reads_s[0])
    last_j = sum(r.energy_j for r in meter.read(reads_s[0]))
    windows_j = []
    for end_s in reads_s[1:]:
        while (interval_s := meter.poll_interval_s) is not None and clock() + interval_s < end_s - 1e-9:
            clock.set(round(clock() + interval_s, 6))
            meter.poll(clock())
        clock.set(end_s)
        now_j = sum(r.energy_j for r in meter.read(end_s))
        windows_j.append(now_j - last_j)
        last_j = now_j
    return windows_j, meter


def _share(meter: NvmlMeter) -> str:
    (device,) = meter.report()["devices"]
    return device["share"]


@pytest.mark.parametrize("device_utilisation", [True, False], ids=["device-utilisation", "time-since-busy"])
def test_a_share_left_from_before_the_tracker_opened_does_not_bill_two_idle_contexts_to_us(device_utilisation: bool) -> None:
    warm_up = FakeProcess(ME, sm_util=lambda t_s: 100.0 if t_s < 1.0 else 0.0)  # busy, then idle
    gpu = FakeGPU("GPU-idle", power_w=POWER_W, processes=[warm_up, FakeProcess(NEIGHBOUR)],
                  **({} if device_utilisation else NO_DEVICE_UTILISATION))
    (energy_j,), meter = _windows_j(gpu, [2.0, 12.0])
    assert energy_j == pytest.approx(POWER_W * 10.0 / 2, rel=0.01)  # half: two idle contexts
    assert _share(meter) == "gpu-utilisation"


@pytest.mark.parametrize("device_utilisation", [True, False], ids=["device-utilisation", "time-since-busy"])
def test_once_both_processes_are_idle_the_last_busy_share_stops_applying(device_utilisation: bool) -> None:
    ours = FakeProcess(ME, sm_util=lambda t_s: 100.0 if t_s < 5.0 else 0.0)  # trains 5 s, then idles
    gpu = FakeGPU("GPU-idle", power_w=POWER_W, processes=[ours, FakeProcess(NEIGHBOUR)],
                  **({} if device_utilisation else NO_DEVICE_UTILISATION))
    (energy_j,), _ = _windows_j(gpu, [0.0, 15.0])
    # the first 0.1 s (before a sample) at half; ours alone busy until 5 s; then half of the idle
    # power — at once where the device's utilisation says idle, else IDLE_AFTER_S later
    lag_s = 0.0 if device_utilisation else IDLE_AFTER_S - 0.1
    expected_j = POWER_W * (0.1 * 0.5 + 4.9 + lag_s + (10.0 - lag_s) * 0.5)
    assert energy_j == pytest.approx(expected_j, abs=POWER_W * 0.15)


@pytest.mark.parametrize("period_s", [0.1, 0.5, 1.0, 1.5, 2.0])  # NVML: 1/6 s to 1 s by product; and beyond
@pytest.mark.parametrize("device_utilisation", [True, False], ids=["device-utilisation", "time-since-busy"])
def test_busy_sharing_keeps_its_share_however_rarely_the_driver_samples(period_s: float, device_utilisation: bool) -> None:
    gpu = FakeGPU("GPU-busy", power_w=POWER_W, process_sample_period_s=period_s,
                  processes=[FakeProcess(ME, sm_util=30.0), FakeProcess(NEIGHBOUR, sm_util=70.0)],
                  **({} if device_utilisation else NO_DEVICE_UTILISATION))
    (energy_j,), meter = _windows_j(gpu, [0.0, 30.0])
    # until the first sample (one period) the processes holding a context split it: half
    expected_j = POWER_W * (period_s * 0.5 + (30.0 - period_s) * 0.3)
    assert energy_j == pytest.approx(expected_j, rel=0.03)
    assert _share(meter) == "gpu-utilisation"


def test_idle_beside_a_busy_neighbour_sampled_every_two_seconds_costs_us_nothing() -> None:
    gpu = FakeGPU("GPU-busy", power_w=POWER_W, process_sample_period_s=2.0, **NO_DEVICE_UTILISATION,
                  processes=[FakeProcess(ME), FakeProcess(NEIGHBOUR, sm_util=100.0)])
    (energy_j,), _ = _windows_j(gpu, [0.0, 30.0])
    assert energy_j < POWER_W * 2.0 * 0.5 + 1.0  # at most the first period, split by contexts


def test_once_our_context_is_gone_nothing_more_is_billed_to_us() -> None:
    ours = FakeProcess(ME, end_s=3.0)  # our context goes away (the framework freed it); the neighbour idles on
    gpu = FakeGPU("GPU-left", power_w=POWER_W, processes=[ours, FakeProcess(NEIGHBOUR)])
    windows_j, _ = _windows_j(gpu, [0.0, 5.0, 10.0, 20.0])
    assert windows_j[0] == pytest.approx(POWER_W * 3.0 * 0.5, abs=POWER_W * 1.0)  # ~1 s listing lag at most
    assert windows_j[1:] == [0.0, 0.0]


def test_a_neighbour_leaving_mid_window_leaves_us_billed_whole_from_then_on() -> None:
    neighbour = FakeProcess(NEIGHBOUR, sm_util=100.0, end_s=3.0)  # busy until it exits; ours idles throughout
    gpu = FakeGPU("GPU-left", power_w=POWER_W, processes=[FakeProcess(ME), neighbour])
    (energy_j,), _ = _windows_j(gpu, [0.0, 30.0])
    assert energy_j == pytest.approx(POWER_W * 27.0, abs=POWER_W * 1.0)  # alone from 3 s (within a listing)


def test_a_neighbour_arriving_mid_window_is_billed_its_share_from_then_on_not_at_the_next_boundary() -> None:
    neighbour = FakeProcess(NEIGHBOUR, sm_util=80.0, start_s=1.0)
    gpu = FakeGPU("GPU-joined", power_w=POWER_W, processes=[FakeProcess(ME, sm_util=20.0), neighbour])
    windows_j, meter = _windows_j(gpu, [0.0, 60.0, 120.0])
    assert windows_j[0] == pytest.approx(POWER_W * (1.0 + 59.0 * 0.2), abs=POWER_W * 1.0)  # was 12 000 J
    assert windows_j[1] == pytest.approx(POWER_W * 60.0 * 0.2, rel=0.02)
    assert _share(meter) == "gpu-utilisation"


def test_alone_on_a_counter_gpu_the_thread_lists_its_processes_once_a_second() -> None:
    gpu = FakeGPU("GPU-alone", power_w=POWER_W, processes=[FakeProcess(ME, sm_util=90.0)])
    (energy_j,), meter = _windows_j(gpu, [0.0, 10.0])
    assert energy_j == pytest.approx(POWER_W * 10.0)
    assert meter.poll_interval_s == pytest.approx(1.0)


def test_a_failed_query_at_open_still_skips_the_samples_from_before() -> None:
    warm_up = FakeProcess(ME, sm_util=lambda t_s: 100.0 if t_s < 1.0 else 0.0)
    fault = FakeFault(NVML_ERROR_UNKNOWN, functions=frozenset({"nvmlDeviceGetProcessUtilization"}), calls=1)
    gpu = FakeGPU("GPU-glitch", power_w=POWER_W, processes=[warm_up, FakeProcess(NEIGHBOUR)], faults=[fault],
                  **NO_DEVICE_UTILISATION)
    (energy_j,), _ = _windows_j(gpu, [2.0, 12.0])
    assert energy_j == pytest.approx(POWER_W * 10.0 / 2, rel=0.01)


def test_per_process_utilisation_refused_bills_the_shared_gpu_whole_and_says_so_once() -> None:
    refused = FakeFault(NVML_ERROR_NO_PERMISSION, functions=frozenset({"nvmlDeviceGetProcessUtilization"}))
    gpu = FakeGPU("GPU-refused", power_w=POWER_W, faults=[refused],
                  processes=[FakeProcess(ME, sm_util=10.0), FakeProcess(NEIGHBOUR, sm_util=90.0)])
    (energy_j,), meter = _windows_j(gpu, [0.0, 60.0])
    assert energy_j == pytest.approx(POWER_W * 60.0)
    assert _share(meter) == "shared-whole"


def test_a_recurring_query_error_is_reported_once_with_its_count() -> None:
    glitch = FakeFault(NVML_ERROR_UNKNOWN, from_s=5.0, until_s=20.0, functions=frozenset({"nvmlDeviceGetProcessUtilization"}))
    gpu = FakeGPU("GPU-glitchy", power_w=POWER_W, faults=[glitch],
                  processes=[FakeProcess(ME, sm_util=10.0), FakeProcess(NEIGHBOUR, sm_util=90.0)])
    _, meter = _windows_j(gpu, [0.0, 30.0])
    (device,) = meter.report()["devices"]
    unreadable = [e for e in device["events"] if "per-process utilisation unreadable" in e]
    assert len(unreadable) == 1 and "×" in unreadable[0], device["events"]
