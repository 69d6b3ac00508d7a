"""EstimateMeter with injected CPU times: known energies from the documented model."""

from __future__ import annotations

from collections import namedtuple

import pytest

from mlflow_green.errors import ConfigError, MeterError
from mlflow_green.measure import hardware
from mlflow_green.measure.meters.estimate import IDLE_FRACTION, RAM_W_PER_GB, EstimateMeter, busy_cpu_s
from mlflow_green.measure.readings import Snapshot

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")
GIB = 2**30


class ScriptedCpuTimes:
    """Cumulative CPU times that advance only when told (busy seconds summed over all CPUs)."""

    def __init__(self) -> None:
        self.busy_s = 0.0
        self.idle_s = 1000.0

    def __call__(self) -> CpuTimes:
        user = self.busy_s * 0.75
        system = self.busy_s * 0.25
        return CpuTimes(user, 0.0, system, self.idle_s, 5.0, 0.0, 0.0, 3.0, 0.0, 0.0)


def test_known_energy() -> None:
    times = ScriptedCpuTimes()
    meter = EstimateMeter(cpu_times=times, cpu_count=8, tdp_w=200.0, ram_bytes=16 * GIB)
    meter.open(50.0)
    times.busy_s += 40.0  # 40 CPU-seconds over 8 CPUs in 10 s: 50 % utilisation
    counters = {c.device_id: c for c in meter.read(60.0)}
    expected_cpu_j = 200.0 * (IDLE_FRACTION * 10.0 + (1 - IDLE_FRACTION) * 40.0 / 8)
    assert expected_cpu_j == pytest.approx(1100.0)
    assert counters["cpu:0"].energy_j == pytest.approx(expected_cpu_j)
    assert counters["ram:0"].energy_j == pytest.approx(16 * RAM_W_PER_GB * 10.0)
    assert all(c.provenance == "estimate" and c.meter == "estimate" for c in counters.values())
    assert counters["cpu:0"].component == "cpu" and counters["ram:0"].component == "ram"
    assert counters["ram:0"].label == "RAM 16.0 GiB"
    assert counters["cpu:0"].label == hardware.cpu_model()


def test_idle_machine_draws_the_idle_fraction() -> None:
    times = ScriptedCpuTimes()
    meter = EstimateMeter(cpu_times=times, cpu_count=4, tdp_w=100.0, ram_bytes=0)
    meter.open(0.0)
    times.idle_s += 400.0
    assert meter.read(100.0)[0].energy_j == pytest.approx(100.0 * IDLE_FRACTION * 100.0)


def test_utilisation_is_capped_at_full_load() -> None:
    times = ScriptedCpuTimes()
    meter = EstimateMeter(cpu_times=times, cpu_count=2, tdp_w=100.0, ram_bytes=0)
    meter.open(0.0)
    times.busy_s += 100.0  # more than 2 CPUs × 1 s can do
    assert meter.read(1.0)[0].energy_j == pytest.approx(100.0)


def test_windows_are_counter_deltas() -> None:
    times = ScriptedCpuTimes()
    meter = EstimateMeter(cpu_times=times, cpu_count=1, tdp_w=10.0, ram_bytes=8 * GIB)
    meter.open(0.0)
    first = Snapshot(0.0, meter.read(0.0))
    times.busy_s += 1.0
    second = Snapshot(2.0, meter.read(2.0))
    times.busy_s += 2.0
    third = Snapshot(4.0, meter.read(4.0))
    assert (second - first).component_energy_j("cpu") == pytest.approx(10.0 * (0.2 + 0.9))
    assert (third - second).component_energy_j("cpu") == pytest.approx(10.0 * (0.2 + 1.8))
    assert (third - first).component_energy_j("ram") == pytest.approx(8 * 0.375 * 4.0)
    assert (third - first).estimated


def test_busy_excludes_idle_iowait_steal_and_guest() -> None:
    times = CpuTimes(10.0, 1.0, 4.0, 100.0, 7.0, 0.5, 0.5, 9.0, 3.0, 0.0)
    assert busy_cpu_s(times) == pytest.approx(16.0)


def test_is_available_explains_the_model() -> None:
    availability = EstimateMeter(tdp_w=65.0, ram_bytes=24 * GIB).is_available()
    assert availability.available
    assert availability.components == {"cpu", "ram"}
    assert availability.provenance == "estimate"
    assert "65 W" in availability.reason and "24 GiB × 0.375 W/GiB" in availability.reason


def test_default_tdp_comes_from_the_table() -> None:
    availability = EstimateMeter().is_available()
    _, note = hardware.cpu_tdp_w()
    assert availability.reason.startswith(f"CPU: {note}")


def test_defaults_read_this_machine() -> None:
    meter = EstimateMeter()
    meter.open(0.0)
    cpu, ram = meter.read(1.0)
    assert cpu.energy_j > 0 and ram.energy_j > 0
    assert meter.poll_interval_s is None


@pytest.mark.parametrize("kwargs", [{"tdp_w": 0.0}, {"ram_bytes": -1}, {"cpu_count": 0}])
def test_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        EstimateMeter(**kwargs)  # type: ignore[arg-type]


def test_errors() -> None:
    def broken() -> CpuTimes:
        raise OSError("no /proc")

    meter = EstimateMeter(cpu_times=broken, cpu_count=1, tdp_w=1.0, ram_bytes=0)
    with pytest.raises(MeterError):
        meter.read(0.0)
    with pytest.raises(MeterError, match="no /proc"):
        meter.open(0.0)
