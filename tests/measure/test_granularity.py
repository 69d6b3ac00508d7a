"""Counter granularity: the update period is learnt without blocking start; short windows are flagged."""

from __future__ import annotations

import logging
import time

import pytest

from mlflow_green import EnergyTracker
from mlflow_green.measure.meters.nvml import NvmlMeter
from mlflow_green.measure.meters.nvml_energy import PROBE_INTERVAL_S
from mlflow_green.record.report import build_report
from mlflow_green.testing import FakeGPU, FakeNVML, ManualClock


def _probe(meter: NvmlMeter, clock: ManualClock, until_s: float) -> None:
    """The sampler thread's fast polls while the update period is learnt."""
    t_s = clock()
    while t_s < until_s:
        t_s += PROBE_INTERVAL_S
        clock.set(t_s)
        meter.poll(t_s)


@pytest.mark.parametrize("period_s", [0.02, 0.1])
def test_the_update_period_is_learnt_from_the_thread(period_s: float) -> None:
    clock = ManualClock()
    meter = NvmlMeter(nvml=FakeNVML([FakeGPU("GPU-u", update_period_s=period_s)], clock=clock), environ={})
    meter.open(0.0)
    assert meter.update_periods_s() == {}  # not learnt at start: start does not wait for it
    _probe(meter, clock, 1.0)
    assert meter.update_periods_s()["gpu:GPU-u"] == pytest.approx(period_s, abs=PROBE_INTERVAL_S)
    assert meter.poll_interval_s is None  # the thread is no longer needed


def test_a_fake_counter_with_an_update_period_reads_whole_ticks() -> None:
    """The issue's observation, reproduced by the fake: 50 ms windows on a 100 ms counter read 0 J half the time."""
    clock = ManualClock()
    nvml = FakeNVML([FakeGPU("GPU-u", power_w=300.0, update_period_s=0.1)], clock=clock)
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    zero = 0
    for i in range(200):
        clock.set(0.0123 + i * 0.0371)
        before = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        clock.advance(0.05)
        zero += nvml.nvmlDeviceGetTotalEnergyConsumption(handle) == before
    assert 0.4 < zero / 200 < 0.6


def test_windows_shorter_than_ten_update_periods_are_flagged_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    meter = NvmlMeter(nvml=FakeNVML([FakeGPU("GPU-u", power_w=300.0, update_period_s=0.1)], clock=clock), environ={})
    tracker = EnergyTracker(meters=[meter], clock=clock, scope="machine")
    tracker.start()
    assert tracker.counter_update_period_s is None  # not learnt yet: start did not wait
    _probe(meter, clock, 1.0)
    assert tracker.counter_update_period_s == pytest.approx(0.1, abs=PROBE_INTERVAL_S)  # measure_inference sizes windows by it
    with caplog.at_level(logging.WARNING, logger="mlflow_green.measure.granularity"):
        for name, duration_s in [("50ms", 0.05), ("250ms", 0.25), ("1s", 1.0), ("2s", 2.0), ("50ms again", 0.05)]:
            with tracker.window(name):
                clock.advance(duration_s)
        assert tracker.check_granularity(tracker.elapsed(), "total so far") is False
    total = tracker.stop()
    coarse = {c["window"]: c for c in tracker.granularity.coarse}
    assert set(coarse) == {"50ms", "250ms", "50ms again"}
    assert coarse["250ms"]["min_duration_s"] == pytest.approx(1.0, abs=0.1)
    assert coarse["250ms"]["update_period_s"] == {"gpu:GPU-u": pytest.approx(0.1, abs=PROBE_INTERVAL_S)}
    warnings = [r for r in caplog.records if "update periods of the energy counter" in r.getMessage()]
    assert len(warnings) == 1 and "'50ms'" in warnings[0].getMessage()
    report = build_report(tracker, total)
    assert [c["window"] for c in report["granularity"]["coarse_windows"]] == ["50ms", "250ms", "50ms again"]
    assert report["granularity"]["update_period_s"] == {"gpu:GPU-u": pytest.approx(0.1, abs=PROBE_INTERVAL_S)}


def test_windows_and_epochs_closed_before_the_period_was_learnt_are_flagged_at_stop() -> None:
    clock = ManualClock()
    meter = NvmlMeter(nvml=FakeNVML([FakeGPU("GPU-u", update_period_s=0.1)], clock=clock), environ={})
    tracker = EnergyTracker(meters=[meter], clock=clock, scope="machine")
    tracker.start()
    with tracker.window("early"):
        clock.advance(0.05)
    begin = tracker.snapshot()
    clock.advance(0.2)
    assert tracker.check_granularity(tracker.snapshot() - begin, "epoch 0") is False  # as the session does
    _probe(meter, clock, 1.5)
    tracker.stop()
    assert [c["window"] for c in tracker.granularity.coarse] == ["early", "epoch 0"]


def test_start_does_not_wait_for_the_probe() -> None:
    """The cold start→stop budget is 5 ms: learning the period happens in the thread."""
    nvml = FakeNVML([FakeGPU("GPU-u", update_period_s=0.1)])  # real clock
    tracker = EnergyTracker(meters=[NvmlMeter(nvml=nvml, environ={})], scope="machine")
    began = time.perf_counter()
    tracker.start()
    tracker.stop()
    assert time.perf_counter() - began < 0.5  # far below one probe (~0.6 s at 100 ms)
