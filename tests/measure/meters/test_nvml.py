"""NvmlMeter against a fake NVML: counters, sampled power, CUDA_VISIBLE_DEVICES, failures."""

from __future__ import annotations

import pytest

from mlflow_green.errors import ConfigError, MeterError
from mlflow_green.measure.meters.cuda_visible import parse_visible_devices, resolve_visible
from mlflow_green.measure.meters.nvml import MISSING_PACKAGE_REASON, NvmlMeter
from mlflow_green.measure.meters.nvml_energy import PROBE_BUDGET_S, PROBE_INTERVAL_S
from mlflow_green.measure.readings import Snapshot
from mlflow_green.testing import FakeGPU, FakeNVML, ManualClock

UUIDS = ["GPU-0a1b2c3d-0000", "GPU-4e5f6a7b-1111", "GPU-8c9d0e1f-2222"]


def _nvml(*gpus: FakeGPU, clock: ManualClock | None = None, **kwargs: object) -> FakeNVML:
    return FakeNVML(list(gpus), clock=clock or ManualClock(), **kwargs)  # type: ignore[arg-type]


def _three_gpus(clock: ManualClock) -> FakeNVML:
    return _nvml(*(FakeGPU(uuid, name=f"GPU {i}") for i, uuid in enumerate(UUIDS)), clock=clock)


def _run_sampled(meter: NvmlMeter, clock: ManualClock, until_s: float, interval_s: float) -> None:
    """Drive poll() as the tracker's background thread would, with explicit timestamps."""
    steps = round(until_s / interval_s)
    for i in range(1, steps):
        clock.set(i * interval_s)
        meter.poll(clock())


def test_counter_device() -> None:
    clock = ManualClock()
    nvml = _nvml(FakeGPU(UUIDS[0], name="NVIDIA H100 80GB HBM3", power_w=300.0), clock=clock)
    meter = NvmlMeter(nvml=nvml, environ={})

    availability = meter.is_available()
    assert availability.available and availability.components == {"gpu"}
    assert availability.provenance == "counter"
    assert "NVIDIA H100 80GB HBM3" in availability.reason
    assert nvml.initialised == 0  # is_available leaves NVML shut down

    meter.open(clock())
    assert meter.poll_interval_s == PROBE_INTERVAL_S  # a second or two learning the update period
    _run_sampled(meter, clock, PROBE_BUDGET_S + 0.01, PROBE_INTERVAL_S)
    assert meter.poll_interval_s is None  # then counters need no thread
    clock.set(4.0)
    (counter,) = meter.read(clock())
    assert counter.device_id == f"gpu:{UUIDS[0]}"
    assert counter.component == "gpu"
    assert counter.energy_j == pytest.approx(1200.0)
    assert counter.provenance == "counter"
    assert counter.meter == "nvml"
    assert counter.label == "NVIDIA H100 80GB HBM3"
    assert nvml.calls["nvmlDeviceGetPowerUsage"] <= 2  # one prior at open, no sampling
    # a continuous fake counter changes at every probe: its period is at most the probe interval
    assert meter.update_periods_s() == {f"gpu:{UUIDS[0]}": pytest.approx(PROBE_INTERVAL_S)}

    meter.close()
    assert nvml.initialised == 0


def test_counter_device_with_a_varying_trace() -> None:
    clock = ManualClock()
    nvml = _nvml(FakeGPU(UUIDS[0], power_w=lambda t: 100.0 + 10.0 * t), clock=clock)
    meter = NvmlMeter(nvml=nvml, environ={})
    meter.open(clock())
    clock.set(10.0)
    start = Snapshot(10.0, meter.read(10.0))
    clock.set(20.0)
    window = Snapshot(20.0, meter.read(20.0)) - start
    assert window.energy_j == pytest.approx(2500.0, rel=1e-4)  # ∫10..20 (100 + 10t) dt


def test_sampled_device_constant_power() -> None:
    clock = ManualClock()
    nvml = _nvml(FakeGPU(UUIDS[0], power_w=250.0, has_energy_counter=False), clock=clock)
    meter = NvmlMeter(nvml=nvml, environ={}, sample_interval_s=0.1)
    assert meter.is_available().provenance == "sampled"
    meter.open(clock())
    assert meter.poll_interval_s == pytest.approx(0.1)
    _run_sampled(meter, clock, 10.0, 0.1)
    clock.set(10.0)
    (counter,) = meter.read(clock())
    assert counter.provenance == "sampled"
    assert counter.energy_j == pytest.approx(2500.0, rel=1e-9)
    assert meter.label("gpu", counter.provenance) == "nvml-sampled"


def test_sampled_device_stepped_trace_within_half_a_percent() -> None:
    clock = ManualClock()
    trace = lambda t: 100.0 if t < 5.05 else 300.0  # noqa: E731 - a step between two samples
    nvml = _nvml(FakeGPU(UUIDS[0], power_w=trace, has_energy_counter=False), clock=clock)
    meter = NvmlMeter(nvml=nvml, environ={})
    meter.open(0.0)
    _run_sampled(meter, clock, 10.0, 0.1)
    clock.set(10.0)
    (counter,) = meter.read(10.0)
    exact_j = 100.0 * 5.05 + 300.0 * 4.95
    assert counter.energy_j == pytest.approx(exact_j, rel=0.005)


def test_read_takes_a_fresh_sample_at_the_boundary() -> None:
    clock = ManualClock()
    trace = lambda t: 100.0 if t < 1.0 else 500.0  # noqa: E731
    nvml = _nvml(FakeGPU(UUIDS[0], power_w=trace, has_energy_counter=False), clock=clock)
    meter = NvmlMeter(nvml=nvml, environ={}, sample_interval_s=10.0)  # no poll in between
    meter.open(0.0)
    clock.set(0.5)
    assert meter.read(0.5)[0].energy_j == pytest.approx(50.0)


def test_mixed_devices_poll_only_the_sampled_one() -> None:
    clock = ManualClock()
    nvml = _nvml(
        FakeGPU(UUIDS[0], power_w=200.0),
        FakeGPU(UUIDS[1], power_w=100.0, has_energy_counter=False),
        clock=clock,
    )
    meter = NvmlMeter(nvml=nvml, environ={})
    meter.configure(sample_interval_s=0.5)
    meter.open(0.0)
    assert meter.poll_interval_s == pytest.approx(PROBE_INTERVAL_S)  # learning the counter's update period
    _run_sampled(meter, clock, PROBE_BUDGET_S + 0.01, PROBE_INTERVAL_S)
    assert meter.poll_interval_s == pytest.approx(0.5)  # then only the power-only GPU needs the thread
    before = nvml.calls["nvmlDeviceGetTotalEnergyConsumption"]
    for t_s in (2.5, 3.0, 3.5):
        clock.set(t_s)
        meter.poll(t_s)
    assert nvml.calls["nvmlDeviceGetTotalEnergyConsumption"] == before
    clock.set(4.0)
    counters = {c.device_id: c for c in meter.read(4.0)}
    assert counters[f"gpu:{UUIDS[0]}"].energy_j == pytest.approx(800.0)
    assert counters[f"gpu:{UUIDS[0]}"].provenance == "counter"
    assert counters[f"gpu:{UUIDS[1]}"].energy_j == pytest.approx(400.0)
    assert counters[f"gpu:{UUIDS[1]}"].provenance == "sampled"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, UUIDS),
        ("", []),
        ("1", [UUIDS[1]]),
        ("2,0", [UUIDS[2], UUIDS[0]]),
        (UUIDS[1], [UUIDS[1]]),
        ("GPU-8c9d", [UUIDS[2]]),
        ("8c9d", []),  # not a GPU- UUID: read as an index (8), which does not exist
        ("0,7,1", [UUIDS[0]]),  # like CUDA, stops at the first invalid entry
        ("GPU-nope", []),
        ("MIG-4e5f6a7b-0001", []),
        ("1,0,1", []),  # a duplicate hides every GPU
    ],
)
def test_cuda_visible_devices(value: str | None, expected: list[str]) -> None:
    clock = ManualClock()
    environ = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    meter = NvmlMeter(nvml=_three_gpus(clock), environ=environ)
    if not expected:
        availability = meter.is_available()
        assert not availability.available
        assert availability.reason.startswith("NVML: no NVIDIA GPU visible")
        with pytest.raises(MeterError):
            meter.open(0.0)
        return
    meter.open(0.0)
    assert [c.device_id for c in meter.read(1.0)] == [f"gpu:{u}" for u in expected]


def test_visible_gpu_indices_ambiguous_prefix() -> None:
    assert resolve_visible(parse_visible_devices("GPU-ab"), ["GPU-ab1", "GPU-ab2"]).gpus == ()


def test_device_failing_mid_run_degrades_to_estimate() -> None:
    clock = ManualClock()
    nvml = _nvml(
        FakeGPU(UUIDS[0], power_w=300.0, fail_after_s=5.0),
        FakeGPU(UUIDS[1], power_w=100.0, has_energy_counter=False, fail_after_s=5.0),
        FakeGPU(UUIDS[2], power_w=50.0),
        clock=clock,
    )
    meter = NvmlMeter(nvml=nvml, environ={})
    meter.open(0.0)
    clock.set(4.0)
    meter.read(4.0)
    clock.set(10.0)
    counters = {c.device_id: c for c in meter.read(10.0)}  # must not raise

    lost_counter = counters[f"gpu:{UUIDS[0]}"]
    assert lost_counter.provenance == "estimate"
    assert lost_counter.energy_j == pytest.approx(3000.0)  # 1200 J in 4 s, then 300 W extrapolated
    assert "GpuIsLost" in lost_counter.note and "300.0 W" in lost_counter.note

    lost_sampled = counters[f"gpu:{UUIDS[1]}"]
    assert lost_sampled.provenance == "estimate"
    assert lost_sampled.energy_j == pytest.approx(1000.0)
    assert lost_sampled.note

    healthy = counters[f"gpu:{UUIDS[2]}"]
    assert healthy.provenance == "counter" and not healthy.note
    assert meter.label("gpu", lost_counter.provenance) == "nvml-estimate"

    clock.set(20.0)  # sticky: stays an estimate, keeps growing
    later = {c.device_id: c for c in meter.read(20.0)}
    assert later[f"gpu:{UUIDS[0]}"].provenance == "estimate"
    assert later[f"gpu:{UUIDS[0]}"].energy_j == pytest.approx(6000.0)

    window = Snapshot(20.0, meter.read(20.0)) - Snapshot(0.0, ())
    assert window.estimated


def test_failure_before_any_read_uses_the_power_seen_at_open() -> None:
    clock = ManualClock()
    nvml = _nvml(FakeGPU(UUIDS[0], power_w=200.0, fail_after_s=1.0), clock=clock)
    meter = NvmlMeter(nvml=nvml, environ={})
    meter.open(0.0)
    clock.set(3.0)
    (counter,) = meter.read(3.0)
    assert counter.provenance == "estimate"
    assert counter.energy_j == pytest.approx(600.0)


def test_open_fails_only_when_nothing_can_be_read() -> None:
    clock = ManualClock()
    nvml = _nvml(FakeGPU(UUIDS[0], has_energy_counter=False, has_power_reading=False, power_limit_w=None), clock=clock)
    meter = NvmlMeter(nvml=nvml, environ={})
    with pytest.raises(MeterError, match="neither its energy counter, its power, nor its power limit"):
        meter.open(0.0)
    assert nvml.initialised == 0
    with pytest.raises(MeterError):
        meter.read(1.0)


def test_a_gpu_lost_before_open_is_skipped() -> None:
    clock = ManualClock()
    nvml = _nvml(FakeGPU(UUIDS[0], fail_after_s=0.0), FakeGPU(UUIDS[1], power_w=10.0), clock=clock)
    meter = NvmlMeter(nvml=nvml, environ={})
    meter.open(0.0)
    clock.set(1.0)
    assert [(c.device_id, c.energy_j) for c in meter.read(1.0)] == [(f"gpu:{UUIDS[1]}", 10.0)]


def test_no_driver_reason() -> None:
    meter = NvmlMeter(nvml=_nvml(FakeGPU(UUIDS[0]), driver=False), environ={})
    availability = meter.is_available()
    assert not availability.available
    assert availability.reason == "NVML: no NVIDIA driver (NVMLError_DriverNotLoaded: Driver Not Loaded)"
    with pytest.raises(MeterError, match="no NVIDIA driver"):
        meter.open(0.0)
    meter.close()  # never raises, even unopened


def test_zero_devices_reason() -> None:
    nvml = _nvml()
    availability = NvmlMeter(nvml=nvml, environ={}).is_available()
    assert availability.reason == "NVML: no NVIDIA GPU visible"
    assert nvml.initialised == 0


def test_labels() -> None:
    meter = NvmlMeter(nvml=_nvml(), environ={})
    assert [meter.label("gpu", p) for p in ("counter", "sampled", "estimate")] == [
        "nvml-counter",
        "nvml-sampled",
        "nvml-estimate",
    ]


def test_bad_sample_interval() -> None:
    with pytest.raises(ConfigError):
        NvmlMeter(nvml=_nvml(), sample_interval_s=0.0)
    with pytest.raises(ConfigError):
        NvmlMeter(nvml=_nvml()).configure(sample_interval_s=-1.0)


def test_close_swallows_shutdown_errors() -> None:
    nvml = _nvml(FakeGPU(UUIDS[0]))
    meter = NvmlMeter(nvml=nvml, environ={})
    meter.open(0.0)
    nvml.initialised = 0  # the next nvmlShutdown raises NVMLError_Uninitialized
    meter.close()


def test_real_pynvml_on_this_machine_never_raises() -> None:
    availability = NvmlMeter().is_available()
    assert availability.reason.startswith("NVML: ")
    if not availability.available:
        assert availability.reason != MISSING_PACKAGE_REASON  # nvidia-ml-py is a test dependency


def test_no_driver_means_pynvml_is_never_imported() -> None:
    import subprocess
    import sys

    from mlflow_green.measure import hardware

    if hardware.nvml_library_error() is None:
        pytest.skip("this machine has an NVIDIA driver")
    code = (
        "import sys; from mlflow_green.measure.meters.nvml import NvmlMeter; from mlflow_green.measure import hardware; "
        "r = NvmlMeter().is_available(); assert not r.available and 'no NVIDIA driver' in r.reason, r; "
        "assert hardware.gpu_names() == []; assert 'pynvml' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
