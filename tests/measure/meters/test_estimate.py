"""EstimateMeter: CodeCarbon's model, for the whole machine or this process tree's share."""

from __future__ import annotations

import time

import pytest

from mlflow_green.errors import ConfigError, MeterError
from mlflow_green.measure.attribution import Attribution
from mlflow_green.measure.codecarbon_model import resolve
from mlflow_green.measure.meters.estimate import EstimateMeter
from mlflow_green.measure.readings import Snapshot
from mlflow_green.testing import FakeMachine

GIB = 2**30
XEON = "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz"  # 125 W in CodeCarbon's table


@pytest.fixture(scope="module")
def xeon_model():  # type: ignore[no-untyped-def]
    """CodeCarbon's model for a 2-thread Xeon Gold 6130 with 16 GiB, resolved through CodeCarbon."""
    return resolve(cpu_model=XEON, logical_cpus=2, ram_total_bytes=16 * GIB, sockets=1)


def _meter(machine: FakeMachine, model, scope: str) -> EstimateMeter:  # type: ignore[no-untyped-def]
    meter = EstimateMeter(cpu_times=machine.cpu_times, model=model)
    meter.attribute(Attribution(scope, machine.tree))  # type: ignore[arg-type]
    meter.open(0.0)
    return meter


def _cpu_j(meter: EstimateMeter, now_s: float) -> float:
    return next(c.energy_j for c in meter.read(now_s) if c.component == "cpu")


def test_machine_scope_uses_codecarbons_cubic_load_curve(xeon_model) -> None:  # type: ignore[no-untyped-def]
    machine = FakeMachine(cpus=2)
    meter = _meter(machine, xeon_model, "machine")
    machine.advance(10.0, tree_cpu_s=0.0, other_cpu_s=10.0)  # 50 % load
    counters = {c.component: c for c in meter.read(10.0)}
    assert counters["cpu"].energy_j == pytest.approx(125.0 * (0.1 + 0.9 * 0.5**3) * 10.0)
    assert counters["ram"].energy_j == pytest.approx(10.0 * 10.0)  # 16 GiB: 2 DIMMs × 5 W
    assert {c.scope for c in counters.values()} == {"machine"}
    assert {c.share for c in counters.values()} == {""}
    assert meter.label("cpu", "estimate") == "estimate"


def test_nearly_idle_process_beside_a_hog_is_billed_as_if_alone(xeon_model) -> None:  # type: ignore[no-untyped-def]
    """The issue's case: a nearly idle fit was billed 4.5× while another process kept one core busy."""
    alone, beside = FakeMachine(cpus=2), FakeMachine(cpus=2)
    alone_meter, beside_meter = _meter(alone, xeon_model, "process"), _meter(beside, xeon_model, "process")
    alone.advance(10.0, tree_cpu_s=0.2, other_cpu_s=0.05)
    beside.advance(10.0, tree_cpu_s=0.2, other_cpu_s=10.0)
    alone_j, beside_j = _cpu_j(alone_meter, 10.0), _cpu_j(beside_meter, 10.0)
    assert beside_j / alone_j <= 1.5
    assert alone_j == pytest.approx(125.0 * 0.2 / 2)  # TDP × the tree's CPU seconds / CPUs
    machine_meter = _meter(FakeMachine(cpus=2), xeon_model, "machine")
    assert machine_meter.attribution.scope == "machine"


def test_a_sleeping_process_is_not_billed_the_package(xeon_model) -> None:  # type: ignore[no-untyped-def]
    """The issue's case: a process that slept 10 s was billed the full 85 W."""
    machine = FakeMachine(cpus=2, rss_bytes=GIB)
    meter = _meter(machine, xeon_model, "process")
    machine.advance(10.0)
    counters = {c.component: c for c in meter.read(10.0)}
    assert counters["cpu"].energy_j == 0.0
    assert counters["ram"].energy_j == pytest.approx(10.0 * (1 / 16) * 10.0)  # its RSS share of 10 W
    assert counters["cpu"].share == "cpu-time" and counters["ram"].share == "rss"
    assert {c.scope for c in counters.values()} == {"process"}
    assert meter.label("cpu", "estimate") == "estimate*cpu-time"
    assert meter.label("ram", "estimate") == "estimate*rss"


def test_idle_machine_in_machine_scope_draws_codecarbons_floor(xeon_model) -> None:  # type: ignore[no-untyped-def]
    machine = FakeMachine(cpus=2)
    meter = _meter(machine, xeon_model, "machine")
    machine.advance(100.0)
    assert _cpu_j(meter, 100.0) == pytest.approx(125.0 * 0.1 * 100.0)


def test_windows_are_counter_deltas_and_add_up(xeon_model) -> None:  # type: ignore[no-untyped-def]
    machine = FakeMachine(cpus=2, rss_bytes=4 * GIB)
    meter = _meter(machine, xeon_model, "process")
    first = Snapshot(0.0, meter.read(0.0))
    machine.advance(2.0, tree_cpu_s=1.0)
    second = Snapshot(2.0, meter.read(2.0))
    machine.advance(2.0, tree_cpu_s=3.0, other_cpu_s=1.0)
    third = Snapshot(4.0, meter.read(4.0))
    assert (second - first).component_energy_j("cpu") == pytest.approx(125.0 * 1.0 / 2)
    assert (third - second).component_energy_j("cpu") == pytest.approx(125.0 * 3.0 / 2)
    assert (third - first).component_energy_j("ram") == pytest.approx(10.0 * 0.25 * 4.0)
    total = third - first
    assert total.estimated and total.apportioned and total.scope_tag() == "cpu:process,ram:process"
    assert total.devices[0].basis == "estimate, apportioned by cpu-time share"


def test_process_using_more_than_the_machine_counted_is_capped(xeon_model) -> None:  # type: ignore[no-untyped-def]
    machine = FakeMachine(cpus=2)
    meter = _meter(machine, xeon_model, "process")
    machine.advance(1.0, tree_cpu_s=2.0)
    machine.tree.cpu_s += 0.5  # tick skew: more than 2 CPUs × 1 s
    assert _cpu_j(meter, 1.0) == pytest.approx(125.0)
    machine.tree.cpu_s += 1.0  # the machine's times did not advance at all: CPUs × time stand in
    assert _cpu_j(meter, 2.0) == pytest.approx(125.0 + 125.0 / 2)


def test_notes_name_codecarbon_version_and_rule(xeon_model) -> None:  # type: ignore[no-untyped-def]
    machine = FakeMachine(cpus=2)
    counters = {c.component: c for c in _meter(machine, xeon_model, "process").read(1.0)}
    assert f"CodeCarbon {xeon_model.codecarbon_version} CPU table" in counters["cpu"].note
    assert "'Intel Xeon Gold 6130'" in counters["cpu"].note and "process-tracking" in counters["cpu"].note
    assert "per-DIMM" in counters["ram"].note and "share of RAM" in counters["ram"].note


def test_given_tdp_and_ram_power_override_the_model(xeon_model) -> None:  # type: ignore[no-untyped-def]
    machine = FakeMachine(cpus=2)
    meter = EstimateMeter(cpu_times=machine.cpu_times, model=xeon_model, tdp_w=65.0, ram_power_w=3.0)
    meter.attribute(Attribution("machine"))
    meter.open(0.0)
    machine.advance(1.0)
    counters = {c.component: c.energy_j for c in meter.read(1.0)}
    assert counters == pytest.approx({"cpu": 6.5, "ram": 3.0})
    assert meter.is_available().reason.startswith("CPU: 65 W TDP (given)")


def test_defaults_read_this_machine_in_process_scope() -> None:
    meter = EstimateMeter()
    assert meter.process_scope is False  # whole machine until told otherwise
    meter.attribute(Attribution())
    meter.open(0.0)
    start_s = time.process_time()
    while time.process_time() - start_s < 0.05:  # burn a little CPU in this process
        sum(i * i for i in range(1000))
    cpu, ram = meter.read(1.0)
    assert cpu.energy_j > 0 and ram.energy_j > 0
    assert cpu.scope == ram.scope == "process"
    assert meter.poll_interval_s is None


@pytest.mark.parametrize("kwargs", [{"tdp_w": 0.0}, {"ram_power_w": -1.0}, {"tdp_w": float("nan")}])
def test_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        EstimateMeter(**kwargs)  # type: ignore[arg-type]


def test_errors(xeon_model) -> None:  # type: ignore[no-untyped-def]
    def broken():  # type: ignore[no-untyped-def]
        raise OSError("no /proc")

    meter = EstimateMeter(cpu_times=broken, model=xeon_model)
    with pytest.raises(MeterError):
        meter.read(0.0)
    with pytest.raises(MeterError, match="no /proc"):
        meter.open(0.0)
    machine = FakeMachine()
    meter = _meter(machine, xeon_model, "process")
    machine.tree.fail = ProcessLookupError("gone")
    with pytest.raises(MeterError, match="gone"):
        meter.read(1.0)


@pytest.mark.parametrize("tree_cpu_s", [-0.5, 0.0, 0.3, 1.999, 2.0, 7.5, float("nan")])
@pytest.mark.parametrize("duration_s", [0.0, 1.0, 1e-9])
@pytest.mark.parametrize("rss_bytes", [0.0, 3.2e9, 1e15, float("nan")])
def test_the_process_power_of_a_boundary_is_the_shares_arithmetic(xeon_model, tree_cpu_s, duration_s, rss_bytes) -> None:  # type: ignore[no-untyped-def]
    """The process-scope power, written out for the epoch boundary's hot path, is exactly what the
    share functions give (capacity share on the process curve, memory share of the RAM power)."""
    from mlflow_green.measure.meters.estimate import _process_w
    from mlflow_green.measure.shares import memory_share, share_of_capacity

    cpu_w, ram_w = _process_w(xeon_model, duration_s, tree_cpu_s, rss_bytes)
    share = share_of_capacity(max(tree_cpu_s, 0.0), 0.0, duration_s, xeon_model.logical_cpus)
    assert cpu_w == xeon_model.cpu_power_w(share, process=True)
    assert ram_w == xeon_model.ram_power_w * memory_share(rss_bytes, xeon_model.ram_total_bytes)
