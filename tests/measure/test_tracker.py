from __future__ import annotations

import threading
import time
from functools import partial

import pytest

from mlflow_green import EnergyTracker
from mlflow_green.errors import ConfigError, TrackerStateError, UnknownMeterError, UnknownRegionError
from mlflow_green.measure.meters.base import Availability, Meter
from mlflow_green.measure.power_integrator import PowerIntegrator
from mlflow_green.measure.readings import DeviceCounter
from mlflow_green.testing import FakeMeter, registered_meters


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


def _all_components(**kw: object) -> FakeMeter:
    return FakeMeter({"gpu:GPU-a": 100.0, "cpu:0": 50.0, "ram:0": 5.0}, **kw)  # type: ignore[arg-type]


def test_start_stop_measures_every_component_exactly_with_a_fake_clock() -> None:
    clock = FakeClock()
    tracker = EnergyTracker(meters=[_all_components()], clock=clock)
    tracker.start()
    clock.advance(10.0)
    total = tracker.stop()
    assert total.duration_s == pytest.approx(10.0)
    assert total.component_energy_j("gpu") == pytest.approx(1000.0)
    assert total.component_energy_j("cpu") == pytest.approx(500.0)
    assert total.component_energy_j("ram") == pytest.approx(50.0)
    assert total.power_w == pytest.approx(155.0)
    assert tracker.meters_tag() == "gpu:fake,cpu:fake,ram:fake"


def test_windows_are_named_and_add_up_to_the_total() -> None:
    clock = FakeClock()
    tracker = EnergyTracker(meters=[_all_components()], clock=clock)
    tracker.start()
    parts = []
    for _ in range(3):
        with tracker.window("epoch") as epoch:
            clock.advance(2.0)
        parts.append(epoch.measurement)
        clock.advance(1.0)  # between epochs: counted in the total, not in an epoch
    total = tracker.stop()
    assert [w.name for w in tracker.windows] == ["epoch"] * 3
    assert sum(p.energy_j for p in parts) == pytest.approx(155.0 * 6)
    assert total.energy_j == pytest.approx(155.0 * 9)
    assert tracker.windows[1].start_offset_s == pytest.approx(3.0)


def test_elapsed_gives_running_totals_without_stopping() -> None:
    clock = FakeClock()
    tracker = EnergyTracker(meters=[_all_components()], clock=clock)
    tracker.start()
    clock.advance(4.0)
    assert tracker.elapsed().energy_j == pytest.approx(620.0)
    assert tracker.running
    clock.advance(1.0)
    assert tracker.stop().energy_j == pytest.approx(775.0)


def test_a_meter_failing_mid_run_is_replaced_by_the_next_meter_and_the_energy_so_far_is_kept() -> None:
    clock = FakeClock()
    meter = FakeMeter({"cpu:0": 10.0, "ram:0": 1.0}, fail_after_reads=2)
    tracker = EnergyTracker(meters=[meter], clock=clock, scope="machine")  # the estimate bills the whole machine
    tracker.start()  # read 1
    clock.advance(1.0)
    assert tracker.elapsed().energy_j == pytest.approx(11.0)  # read 2
    clock.advance(1.0)
    at_failure = tracker.elapsed()  # read 3 fails: extrapolated to now at 11 W, estimate takes over
    assert at_failure.energy_j == pytest.approx(22.0, rel=1e-6)
    assert at_failure.estimated
    clock.advance(10.0)
    total = tracker.stop()
    # The estimate meter now measures CPU and RAM: energy keeps growing, never frozen at 0 W.
    assert total.energy_j > 22.0 + 10.0 * 1.0
    assert tracker.meters_tag() == "cpu:fake>estimate,ram:fake>estimate"
    assert any("scripted failure" in f for f in tracker.faults)
    assert meter.closed


def test_a_meter_failing_to_open_falls_back_at_start() -> None:
    class CannotOpen(FakeMeter):
        def open(self, now_s: float) -> None:
            raise OSError("device busy")

    tracker = EnergyTracker(meters=[CannotOpen({"cpu:0": 10.0, "ram:0": 1.0}, name="flaky")])
    tracker.start()
    total = tracker.stop()
    assert tracker.meters_tag() == "cpu:flaky>estimate*cpu-time,ram:flaky>estimate*rss"
    assert total.estimated and total.energy_j > 0
    assert any("device busy" in f for f in tracker.faults)


def test_a_gpu_whose_meter_fails_with_no_replacement_is_extrapolated_not_zeroed() -> None:
    clock = FakeClock()
    tracker = EnergyTracker(meters=[FakeMeter({"gpu:GPU-a": 200.0}, fail_after_reads=2, name="gpu-fake")], clock=clock)
    tracker.start()
    clock.advance(1.0)
    tracker.elapsed()
    clock.advance(4.0)
    total = tracker.stop()
    assert total.component_energy_j("gpu") == pytest.approx(1000.0)
    gpu = next(d for d in total.devices if d.component == "gpu")
    assert gpu.provenance == "estimate" and "extrapolated" in gpu.note
    assert tracker.meters_tag().startswith("gpu:gpu-fake>extrapolated,")


def test_explicit_meter_order_is_the_priority() -> None:
    first = FakeMeter({"cpu:0": 1.0, "ram:0": 1.0}, name="first", priority=1)
    second = FakeMeter({"cpu:0": 2.0, "ram:0": 2.0}, name="second", priority=999)
    tracker = EnergyTracker(meters=[first, second])
    tracker.start()
    tracker.stop()
    assert tracker.selection is not None
    assert tracker.selection.assignments["cpu"] is first
    assert not second.reads


def test_automatic_selection_uses_priority_not_registration_order() -> None:
    low = partial(FakeMeter, {"cpu:0": 1.0}, name="low", priority=200)
    high = partial(FakeMeter, {"cpu:0": 2.0}, name="high", priority=300)
    for order in ((low, high), (high, low)):
        with registered_meters(*order):
            tracker = EnergyTracker()
            tracker.start()
            tracker.stop()
        assert tracker.selection is not None
        assert tracker.selection.assignments["cpu"].name == "high"
        # RAM is not covered by the fakes: the built-in estimate meter takes it, never 0 J silently.
        assert tracker.selection.assignments["ram"].name in {"estimate", "rapl"}


def test_named_plugin_meters_are_selected_by_name() -> None:
    with registered_meters(partial(FakeMeter, {"cpu:0": 7.0, "ram:0": 1.0}, name="plugged", priority=-5)):
        clock = FakeClock()
        tracker = EnergyTracker(meters="plugged", clock=clock)
        tracker.start()
        clock.advance(1.0)
        assert tracker.stop().energy_j == pytest.approx(8.0)
        assert tracker.meters_tag() == "cpu:plugged,ram:plugged"


def test_an_unavailable_meter_is_skipped_with_its_reason() -> None:
    broken = FakeMeter({"gpu:GPU-a": 1.0}, name="broken", available=False, reason="no driver here")
    tracker = EnergyTracker(meters=[broken])
    tracker.start()
    tracker.stop()
    assert tracker.selection is not None
    assert "gpu" not in tracker.selection.assignments
    assert any("no driver here" in note for note in tracker.selection.notes)
    assert tracker.selection.assignments["cpu"].name == "estimate"


class _SteppedPowerMeter(Meter):
    """A meter without a counter: power sampled by the tracker's thread."""

    name = "stepped"
    priority = 1000

    def __init__(self, interval_s: float) -> None:
        self.poll_interval_s = interval_s
        self._integrator = PowerIntegrator()
        self._t0 = 0.0

    def power_w(self, now_s: float) -> float:
        return 100.0 if now_s - self._t0 < 0.3 else 300.0

    def is_available(self) -> Availability:
        return Availability.yes("test", {"gpu"}, "sampled")

    def open(self, now_s: float) -> None:
        self._t0 = now_s
        self._integrator.add(now_s, self.power_w(now_s))

    def poll(self, now_s: float) -> None:
        self._integrator.add(now_s, self.power_w(now_s))

    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        self.poll(now_s)
        return (DeviceCounter("gpu:GPU-s", "gpu", self._integrator.energy_j, "sampled", self.name),)


def _sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mlflow-green-sampler"]


def test_sampler_thread_integrates_a_known_trace_and_runs_only_while_needed() -> None:
    meter = _SteppedPowerMeter(interval_s=0.005)
    tracker = EnergyTracker(meters=[meter])
    tracker.start()
    assert len(_sampler_threads()) == 1
    time.sleep(0.6)
    total = tracker.stop()
    assert not _sampler_threads()
    duration = total.duration_s
    # the step is 0.3 s after the meter opened; the total starts at the start snapshot, which opening the
    # other meters (CodeCarbon's model, resolved once per machine) can push past the step on a cold cache
    low_s = min(max(0.3 - (tracker.start_snapshot.timestamp_s - meter._t0), 0.0), duration)
    expected_j = 100.0 * low_s + 300.0 * (duration - low_s)
    assert total.component_energy_j("gpu") == pytest.approx(expected_j, rel=0.03)
    assert total.devices[0].provenance == "sampled"


def test_no_thread_when_every_meter_has_a_counter() -> None:
    tracker = EnergyTracker(meters=[_all_components()])
    tracker.start()
    assert not _sampler_threads()
    tracker.stop()


def test_sampler_stops_when_the_tracked_block_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with EnergyTracker(meters=[_SteppedPowerMeter(interval_s=0.01)]):
            raise RuntimeError("boom")
    assert not _sampler_threads()


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"region": "Atlantis"}, UnknownRegionError, "Atlantis"),
        ({"pue": 0.5}, ConfigError, "PUE"),
        ({"sample_interval_s": 0}, ConfigError, "interval"),
        ({"meters": ["no-such-meter"]}, UnknownMeterError, "no-such-meter"),
        ({"meters": [42]}, ConfigError, "meter names or Meter instances"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs: dict, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        EnergyTracker(**kwargs)


def test_lifecycle_errors_are_clear() -> None:
    tracker = EnergyTracker(meters=[_all_components()])
    with pytest.raises(TrackerStateError, match="before start"):
        tracker.stop()
    tracker.start()
    with pytest.raises(TrackerStateError, match="already started"):
        tracker.start()
    with pytest.raises(TrackerStateError, match="without a matching begin"):
        tracker.end("epoch")
    tracker.stop()


class _ScriptedCounter(FakeMeter):
    """A counter meter whose successive reads return the given cumulative joules for cpu:0,
    and a healthy 10 W counter for ram:0."""

    def __init__(self, values_j: list[float], name: str = "scripted") -> None:
        super().__init__({"cpu:0": 0.0, "ram:0": 0.0}, name=name)
        self.values_j = values_j

    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        value = self.values_j[min(self.reads, len(self.values_j) - 1)]
        ram_j = 10.0 * self.reads
        self.reads += 1
        return (DeviceCounter("cpu:0", "cpu", value, "counter", self.name), DeviceCounter("ram:0", "ram", ram_j, "counter", self.name))


@pytest.mark.parametrize(
    ("values_j", "fault", "total_estimated"),
    [
        ([0.0, 100.0, 50.0, 150.0], "went backwards", True),  # a counter reset: the gap is extrapolated
        ([0.0, 100.0, 1e9, 1e9 + 100.0], "not plausible", True),  # 1 GJ in a second: rebased likewise
        ([0.0, 100.0, float("nan"), 300.0], "not a number", False),  # one bad read: the counter covers the gap
    ],
)
def test_a_device_returning_nonsense_is_quarantined_alone_and_counts_on(
    values_j: list[float], fault: str, total_estimated: bool
) -> None:
    clock = FakeClock()
    tracker = EnergyTracker(meters=[_ScriptedCounter(values_j)], clock=clock)
    tracker.start()
    clock.advance(1.0)
    assert tracker.elapsed().component_energy_j("cpu") == pytest.approx(100.0)
    clock.advance(1.0)
    with tracker.window("bad read") as bad:
        clock.advance(1.0)
    total = tracker.stop()
    assert any(fault in f for f in tracker.faults)
    assert tracker.meters_tag() == "cpu:scripted,ram:scripted"  # the meter is kept
    assert total.component_energy_j("cpu") == pytest.approx(300.0)  # 100 W throughout
    assert total.component_energy_j("ram") == pytest.approx(40.0)  # the healthy device, untouched
    by_id = {d.device_id: d for d in total.devices}
    assert by_id["ram:0"].provenance == "counter"
    assert by_id["cpu:0"].provenance == ("estimate" if total_estimated else "counter")
    assert bad.measurement is not None
    assert {d.device_id: d.provenance for d in bad.measurement.devices} == {"cpu:0": "estimate", "ram:0": "counter"}
