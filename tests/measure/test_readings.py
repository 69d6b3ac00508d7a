from __future__ import annotations

import pytest

from mlflow_green.measure.readings import DeviceCounter, DeviceEnergy, Measurement, Snapshot, weakest_provenance


def _snap(t: float, **energies: tuple[float, str]) -> Snapshot:
    return Snapshot(
        t,
        tuple(
            DeviceCounter(dev.replace("_", ":"), dev.split("_")[0], e, prov, "m")  # type: ignore[arg-type]
            for dev, (e, prov) in energies.items()
        ),
        host="h1",
    )


def test_snapshot_difference_is_per_device_energy_with_duration() -> None:
    a = _snap(1.0, cpu_0=(100.0, "counter"), ram_0=(10.0, "estimate"))
    b = _snap(3.0, cpu_0=(160.0, "counter"), ram_0=(14.0, "estimate"))
    m = b - a
    assert m.duration_s == 2.0
    assert m.energy_j == pytest.approx(64.0)
    assert m.component_energy_j("cpu") == pytest.approx(60.0)
    assert m.power_w == pytest.approx(32.0)
    assert m.estimated is True
    assert m.provenance == "estimate"
    assert {d.host for d in m.devices} == {"h1"}


def test_provenance_of_a_window_is_the_weakest_of_its_ends() -> None:
    a = _snap(0.0, gpu_0=(0.0, "counter"))
    b = _snap(1.0, gpu_0=(5.0, "estimate"))
    assert (b - a).devices[0].provenance == "estimate"
    assert weakest_provenance(["counter", "sampled"]) == "sampled"


def test_consecutive_windows_add_up() -> None:
    d = DeviceEnergy("gpu:GPU-1", "gpu", "nvml", "counter", 100.0, 1.0)
    total = Measurement(1.0, (d,)) + Measurement(2.0, (d,))
    assert total.duration_s == 3.0
    assert total.energy_j == 200.0
    assert total.devices[0].duration_s == 3.0


def test_parallel_merge_deduplicates_gpus_by_uuid_and_cpus_by_host() -> None:
    gpu = DeviceEnergy("gpu:GPU-1", "gpu", "nvml", "counter", 100.0, 1.0, host="a")
    gpu_seen_from_b = DeviceEnergy("gpu:GPU-1", "gpu", "nvml", "counter", 100.0, 1.0, host="b")
    cpu_a = DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 50.0, 1.0, host="a")
    cpu_b = DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 70.0, 2.0, host="b")
    merged = Measurement(1.0, (gpu, cpu_a)).merge_parallel(Measurement(2.0, (gpu_seen_from_b, cpu_b, cpu_a)))
    assert merged.energy_j == 220.0
    assert merged.duration_s == 2.0


def test_round_trip_through_dict() -> None:
    m = Measurement(2.0, (DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 5.0, 2.0, "AMD", "h", "n"),))
    assert Measurement.from_dict(m.to_dict()) == m


def test_taking_a_sub_window_out_and_scaling_a_window() -> None:
    epoch = Measurement(10.0, (DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 100.0, 10.0),))
    validation = Measurement(2.0, (DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 30.0, 2.0),))
    rest = epoch - validation
    assert (rest.energy_j, rest.duration_s) == (70.0, 8.0)
    share = rest.scaled(0.25)
    assert (share.energy_j, share.duration_s) == (17.5, 2.0)
    assert share.devices[0].provenance == "counter"
