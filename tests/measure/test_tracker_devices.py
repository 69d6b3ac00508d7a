"""The tracker's device plumbing: synchronising queues, the on-demand thread, merging ranks."""

from __future__ import annotations

import logging
import time

import pytest

from mlflow_green import EnergyTracker
from mlflow_green.measure.readings import DeviceCounter, DeviceEnergy, Measurement, Snapshot
from mlflow_green.testing import FakeMeter, ManualClock


class _OrderedMeter(FakeMeter):
    """Records reads in a shared journal, to check the queue is synchronised before counters are read."""

    def __init__(self, journal: list[str]) -> None:
        super().__init__({"gpu:GPU-s": 100.0, "cpu:0": 10.0, "ram:0": 1.0})
        self.journal = journal

    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        self.journal.append("read")
        return super().read(now_s)


def test_the_device_queue_is_synchronised_before_each_counter_read() -> None:
    journal: list[str] = []
    tracker = EnergyTracker(meters=[_OrderedMeter(journal)], synchronize=lambda: journal.append("sync"))
    tracker.start()
    with tracker.window("epoch"):
        pass
    fresh = tracker.fresh()
    tracker.stop()
    assert journal == ["sync", "read"] * 4
    assert fresh.synchronize is tracker.synchronize  # every fit of a callback keeps it


def test_a_failing_synchronize_is_logged_once_and_never_breaks_measurement(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    tracker = EnergyTracker(meters=[FakeMeter({"cpu:0": 10.0, "ram:0": 1.0})], synchronize=broken)
    with caplog.at_level(logging.WARNING):
        tracker.start()
        tracker.elapsed()
        total = tracker.stop()
    assert total.energy_j >= 0
    assert sum("synchronising the devices" in r.getMessage() for r in caplog.records) == 1


class _LateSampler(FakeMeter):
    """A meter that needs the thread only from some point on (a GPU found shared mid-run)."""

    def __init__(self) -> None:
        super().__init__({"gpu:GPU-l": 50.0, "cpu:0": 1.0, "ram:0": 1.0})
        self.wants_s: float | None = None
        self.polls = 0

    @property
    def poll_interval_s(self) -> float | None:  # type: ignore[override]
        return self.wants_s

    def poll(self, now_s: float) -> None:
        self.polls += 1


def test_the_thread_starts_when_a_meter_comes_to_need_it_and_ends_when_none_does() -> None:
    meter = _LateSampler()
    tracker = EnergyTracker(meters=[meter])
    tracker.start()
    assert tracker._sampler is not None and not tracker._sampler.running
    meter.wants_s = 0.005
    tracker.elapsed()  # a window boundary notices
    deadline = time.monotonic() + 5.0
    while meter.polls < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert meter.polls >= 3
    meter.wants_s = None
    deadline = time.monotonic() + 5.0
    while tracker._sampler.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not tracker._sampler.running
    tracker.stop()


def _device(device_id: str, energy_j: float, *, scope: str = "process", share: str = "", host: str = "h") -> DeviceEnergy:
    component = device_id.split(":")[0]
    return DeviceEnergy(device_id, component, "m", "counter", energy_j, 1.0, host=host, scope=scope, share=share)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b", "merged_j"),
    [
        (_device("cpu:0", 10.0, share="cpu-time"), _device("cpu:0", 30.0, share="cpu-time"), 40.0),  # ranks' shares add
        (_device("ram:0", 4.0, share="rss"), _device("ram:0", 6.0, share="rss"), 10.0),
        (_device("cpu:0", 50.0, scope="machine"), _device("cpu:0", 50.0, scope="machine"), 50.0),  # one host's CPU, once
        (_device("cpu:0", 50.0, scope="machine"), _device("cpu:0", 50.0, scope="machine", host="other"), 100.0),
        (_device("gpu:GPU-x", 70.0, share="gpu-utilisation"), _device("gpu:GPU-x", 20.0, share="gpu-utilisation", host="o"), 90.0),
        (_device("gpu:GPU-x", 90.0, share="shared-whole"), _device("gpu:GPU-x", 90.0, share="shared-whole", host="o"), 90.0),
        (_device("gpu:GPU-x", 90.0), _device("gpu:GPU-x", 20.0, share="gpu-utilisation"), 90.0),  # whole includes the share
        (_device("gpu:MIG-y", 30.0, share="mig"), _device("gpu:MIG-y", 30.0, share="mig", host="o"), 30.0),
    ],
)
def test_merging_ranks_sums_process_shares_and_counts_whole_devices_once(a: DeviceEnergy, b: DeviceEnergy, merged_j: float) -> None:
    merged = Measurement(1.0, (a,)).merge_parallel(Measurement(1.0, (b,)))
    assert merged.energy_j == pytest.approx(merged_j)


def test_a_window_holding_estimated_energy_is_labelled_estimate_even_between_counter_readings() -> None:
    clock = ManualClock()
    start = Snapshot(0.0, (DeviceCounter("gpu:GPU-e", "gpu", 0.0, "counter", "nvml"),))
    gap = Snapshot(5.0, (DeviceCounter("gpu:GPU-e", "gpu", 500.0, "counter", "nvml", estimated_j=200.0),))
    healed = Snapshot(9.0, (DeviceCounter("gpu:GPU-e", "gpu", 900.0, "counter", "nvml", estimated_j=0.0),))
    later = Snapshot(clock() + 12.0, (DeviceCounter("gpu:GPU-e", "gpu", 1200.0, "counter", "nvml"),))
    assert (gap - start).provenance == "estimate"  # it holds 200 J of extrapolation
    assert (healed - gap).provenance == "estimate"  # it corrects that extrapolation
    assert (later - healed).provenance == "counter"
    assert (healed - start).provenance == "counter"  # over the whole run the counter covered the gap
