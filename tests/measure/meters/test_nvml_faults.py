"""Per-device faults: quarantine the GPU, not the meter; reconcile from the counter; no silent drops."""

from __future__ import annotations

import pytest

from mlflow_green import EnergyTracker
from mlflow_green.measure.meters.nvml import NvmlMeter
from mlflow_green.testing import FakeFault, FakeGPU, FakeNVML, ManualClock
from mlflow_green.testing.fake_nvml_errors import NVML_ERROR_TIMEOUT, NVML_ERROR_UNKNOWN

COUNTER = frozenset({"nvmlDeviceGetTotalEnergyConsumption"})


def _tracker(*gpus: FakeGPU) -> tuple[EnergyTracker, ManualClock, FakeNVML]:
    clock = ManualClock(100.0)
    nvml = FakeNVML(list(gpus), clock=clock)
    tracker = EnergyTracker(meters=[NvmlMeter(nvml=nvml, environ={}), "estimate"], clock=clock, scope="machine")
    return tracker, clock, nvml


def _gpu(measurement: object, uuid: str) -> object:
    return next(d for d in measurement.devices if d.device_id == f"gpu:{uuid}")  # type: ignore[attr-defined]


def test_a_transient_error_costs_no_energy() -> None:
    """Today: one NVML error turns the GPU into a mean-power extrapolation (3 000 J vs 8 998 J)."""
    trace = lambda t: 100.0 if t < 10.0 else 600.0  # noqa: E731 - the load rises after warm-up
    glitch = FakeFault(NVML_ERROR_UNKNOWN, from_s=10.0, until_s=10.5, functions=COUNTER)  # one read fails
    tracker, clock, _ = _tracker(FakeGPU("GPU-t", power_w=trace, faults=[glitch]))
    tracker.start()
    windows = []
    for duration_s in (5.0, 5.0, 10.0, 10.0):  # the second window ends on the failing read
        with tracker.window(f"{len(windows)}") as w:
            clock.advance(duration_s)
        windows.append(w.measurement)
    total = tracker.stop()
    exact_j = 100.0 * 10.0 + 600.0 * 20.0  # 13 kJ; today's extrapolation at 100 W would say 3 kJ
    assert _gpu(total, "GPU-t").energy_j == pytest.approx(exact_j, rel=1e-3)  # the fake integrates the step
    assert _gpu(total, "GPU-t").provenance == "counter"  # the counter covered the gap: nothing estimated
    assert [_gpu(w, "GPU-t").provenance for w in windows] == ["counter", "estimate", "estimate", "counter"]
    assert any("not answering" in f and "NVMLError_Unknown" in f for f in tracker.faults)
    assert tracker.meters_tag().startswith("gpu:nvml-counter")  # the meter was never quarantined


def test_a_counter_reset_on_one_gpu_leaves_the_others_alone() -> None:
    """Today: one GPU's counter reset quarantines the whole NVML meter; healthy GPUs get extrapolated."""
    tracker, clock, _ = _tracker(
        FakeGPU("GPU-reset", power_w=200.0, counter_resets_at_s=(12.0,)),
        FakeGPU("GPU-fine", power_w=300.0),
    )
    tracker.start()
    clock.advance(10.0)
    tracker.elapsed()
    with tracker.window("reset") as reset:
        clock.advance(5.0)
    with tracker.window("after") as after:
        clock.advance(5.0)
    total = tracker.stop()
    assert _gpu(total, "GPU-fine").energy_j == pytest.approx(6000.0)
    assert _gpu(total, "GPU-fine").provenance == "counter"
    assert _gpu(reset.measurement, "GPU-fine").provenance == "counter"
    # The reset GPU counts on from its new value; the unseen 2 s before the reset are estimated.
    assert _gpu(total, "GPU-reset").energy_j == pytest.approx(4000.0)
    assert _gpu(reset.measurement, "GPU-reset").provenance == "estimate"
    assert _gpu(after.measurement, "GPU-reset").provenance == "counter"
    assert any("energy counter reset" in f for f in tracker.faults)
    assert tracker.meters_tag() == "gpu:nvml-counter,cpu:estimate,ram:estimate"


def test_a_gpu_still_failing_at_the_end_is_extrapolated_and_labelled() -> None:
    outage = FakeFault(NVML_ERROR_TIMEOUT, from_s=5.0, functions=COUNTER)
    tracker, clock, _ = _tracker(FakeGPU("GPU-out", power_w=250.0, faults=[outage]))
    tracker.start()
    clock.advance(4.0)
    tracker.elapsed()
    clock.advance(6.0)
    total = tracker.stop()
    gpu = _gpu(total, "GPU-out")
    assert gpu.energy_j == pytest.approx(2500.0) and gpu.provenance == "estimate"
    assert "NVMLError_Timeout" in gpu.note and total.estimated


def test_a_gpu_without_counter_or_power_is_estimated_from_utilisation_and_the_power_limit() -> None:
    """Today: a GPU that answers neither the counter nor power disappears from the total."""
    clock = ManualClock()
    nvml = FakeNVML(
        [FakeGPU("GPU-blind", has_energy_counter=False, has_power_reading=False, power_limit_w=400.0, utilisation_pct=50.0)],
        clock=clock,
    )
    meter = NvmlMeter(nvml=nvml, environ={})
    assert meter.is_available().provenance == "estimate"
    meter.open(0.0)
    assert meter.poll_interval_s == meter.sample_interval_s  # sampled, in the thread
    for i in range(1, 100):
        clock.set(i / 10)
        meter.poll(clock())
    clock.set(10.0)
    (reading,) = meter.read(10.0)
    assert reading.energy_j == pytest.approx(2000.0)
    assert reading.provenance == "estimate" and reading.estimated_j == pytest.approx(reading.energy_j)
    assert "utilisation × enforced power limit (400 W)" in reading.note


def test_unreadable_utilisation_falls_back_to_the_power_limit_as_an_upper_bound() -> None:
    clock = ManualClock()
    nvml = FakeNVML(
        [FakeGPU("GPU-blind", has_energy_counter=False, has_power_reading=False, power_limit_w=300.0, utilisation_pct=None)],
        clock=clock,
    )
    meter = NvmlMeter(nvml=nvml, environ={})
    meter.open(0.0)
    clock.set(2.0)
    (reading,) = meter.read(2.0)
    assert reading.energy_j == pytest.approx(600.0)
    assert "an upper bound" in reading.note


def test_a_power_only_gpu_bridges_a_gap_and_labels_it() -> None:
    clock = ManualClock()
    gap = FakeFault(NVML_ERROR_UNKNOWN, from_s=3.0, until_s=5.0, functions=frozenset({"nvmlDeviceGetPowerUsage"}))
    nvml = FakeNVML([FakeGPU("GPU-p", power_w=100.0, has_energy_counter=False, faults=[gap])], clock=clock)
    meter = NvmlMeter(nvml=nvml, environ={})
    meter.open(0.0)
    estimated_before = 0.0
    for i in range(1, 100):
        clock.set(i / 10)
        meter.poll(clock())
        if i == 40:
            estimated_before = meter.read(4.0)[0].estimated_j  # during the gap: extrapolated
    clock.set(10.0)
    (reading,) = meter.read(10.0)
    assert estimated_before > 0
    assert reading.energy_j == pytest.approx(1000.0)
    assert 0 < reading.estimated_j <= 250.0  # the bridged gap, and only it
