"""RaplMeter against a fake powercap tree: sockets, dies, psys, DRAM, wraparound, permissions, process shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_green.errors import MeterError
from mlflow_green.measure import hardware
from mlflow_green.measure.attribution import Attribution
from mlflow_green.measure.meters.rapl import MAX_POLL_INTERVAL_S, MIN_POLL_INTERVAL_S, RaplMeter
from mlflow_green.measure.readings import Snapshot
from mlflow_green.testing import FakeMachine, FakePowercapTree

MJ = 1_000_000  # micro-joules per joule


@pytest.fixture()
def tree(tmp_path: Path) -> FakePowercapTree:
    return FakePowercapTree(tmp_path / "powercap")


def _meter(tree: FakePowercapTree) -> RaplMeter:
    return RaplMeter(tree.root, read_text=tree.read_text)


def _by_id(meter: RaplMeter, now_s: float) -> dict[str, float]:
    return {c.device_id: c.energy_j for c in meter.read(now_s)}


def test_two_sockets_with_dram(tree: FakePowercapTree) -> None:
    tree.add_socket(0, energy_uj=5 * MJ, dram_energy_uj=1 * MJ)
    tree.add_socket(1, energy_uj=7 * MJ, dram_energy_uj=2 * MJ)
    meter = _meter(tree)

    availability = meter.is_available()
    assert availability.available
    assert availability.components == {"cpu", "ram"}
    assert availability.provenance == "counter"
    assert "2 sockets" in availability.reason

    meter.open(100.0)
    assert _by_id(meter, 100.0) == {"cpu:0": 0.0, "ram:0": 0.0, "cpu:1": 0.0, "ram:1": 0.0}
    tree.advance(0, package_j=40.0, dram_j=4.0)
    tree.advance(1, package_j=60.0, dram_j=6.0)
    counters = meter.read(102.0)
    assert {c.device_id: c.energy_j for c in counters} == {"cpu:0": 40.0, "ram:0": 4.0, "cpu:1": 60.0, "ram:1": 6.0}
    assert {c.component for c in counters} == {"cpu", "ram"}
    assert all(c.provenance == "counter" and c.meter == "rapl" and not c.note for c in counters)
    labels = {c.device_id: c.label for c in counters}
    assert labels["cpu:0"] == hardware.cpu_model()
    assert labels["ram:1"] == "DRAM"
    meter.close()


def test_energy_reaches_a_measurement(tree: FakePowercapTree) -> None:
    tree.add_socket(0, dram=False)
    meter = _meter(tree)
    meter.open(0.0)
    first = Snapshot(0.0, meter.read(0.0))
    tree.advance(0, package_j=150.0)
    window = Snapshot(3.0, meter.read(3.0)) - first
    assert window.energy_j == pytest.approx(150.0)
    assert window.power_w == pytest.approx(50.0)
    assert window.provenance == "counter"


def test_without_dram_only_cpu(tree: FakePowercapTree) -> None:
    tree.add_socket(0, dram=False)
    meter = _meter(tree)
    assert meter.is_available().components == {"cpu"}
    meter.open(0.0)
    assert [c.device_id for c in meter.read(1.0)] == ["cpu:0"]


def test_core_and_psys_zones_are_ignored(tree: FakePowercapTree) -> None:
    tree.add_socket(0, dram=False)
    psys = tree.add_psys(1)
    meter = _meter(tree)
    meter.open(0.0)
    tree.advance(0, package_j=10.0)
    tree.set_energy(psys, 999 * MJ)  # overlaps the package: must not be counted
    tree.set_energy(tree.package_zone(0) / "intel-rapl:0:0", 7 * MJ)  # core: part of the package
    assert _by_id(meter, 1.0) == {"cpu:0": 10.0}


def test_amd_zone_prefix(tmp_path: Path) -> None:
    tree = FakePowercapTree(tmp_path, prefix="amd-rapl")
    tree.add_socket(0, dram=False)
    meter = _meter(tree)
    assert meter.is_available().available
    meter.open(0.0)
    tree.advance(0, package_j=3.0)
    assert _by_id(meter, 1.0) == {"cpu:0": 3.0}


def test_wraparound(tree: FakePowercapTree) -> None:
    max_uj = 1000 * MJ
    tree.add_socket(0, energy_uj=900 * MJ, max_energy_range_uj=max_uj, dram_energy_uj=990 * MJ)
    meter = _meter(tree)
    meter.open(0.0)
    tree.advance(0, package_j=250.0, dram_j=25.0)  # both counters wrap
    assert tree.energy_uj(tree.package_zone(0)) == 150 * MJ
    assert _by_id(meter, 1.0) == pytest.approx({"cpu:0": 250.0, "ram:0": 25.0})
    tree.advance(0, package_j=100.0)
    assert _by_id(meter, 2.0)["cpu:0"] == pytest.approx(350.0)


def test_poll_guards_against_double_wrap(tree: FakePowercapTree) -> None:
    max_uj = 1000 * MJ
    tree.add_socket(0, max_energy_range_uj=max_uj, dram=False)
    polled, unpolled = _meter(tree), RaplMeter(tree.root, read_text=tree.read_text)
    polled.open(0.0)
    unpolled.open(0.0)
    for step in range(1, 4):  # 3 × 600 J through a 1000 J counter: wraps twice
        tree.advance(0, package_j=600.0)
        polled.poll(float(step))
    assert _by_id(polled, 4.0)["cpu:0"] == pytest.approx(1800.0)
    assert _by_id(unpolled, 4.0)["cpu:0"] < 1800.0  # what a reader without the guard loses


@pytest.mark.parametrize(
    ("max_range_j", "expected_s"),
    [(10_000.0, 10.0), (262_143.0, MAX_POLL_INTERVAL_S), (100.0, MIN_POLL_INTERVAL_S)],
)
def test_poll_interval_is_the_wrap_guard(tree: FakePowercapTree, max_range_j: float, expected_s: float) -> None:
    tree.add_socket(0, max_energy_range_uj=int(max_range_j * MJ))
    meter = _meter(tree)
    meter.open(0.0)
    assert meter.poll_interval_s == pytest.approx(expected_s)


def test_absent_tree_is_unavailable(tmp_path: Path) -> None:
    meter = RaplMeter(tmp_path / "no-powercap")
    availability = meter.is_available()
    assert not availability.available
    assert availability.reason == (
        f"RAPL: {tmp_path / 'no-powercap'} not present (VM or container) — CPU energy will be estimated"
    )
    with pytest.raises(MeterError):
        meter.open(0.0)


def test_default_root_on_this_machine_never_raises() -> None:
    availability = RaplMeter().is_available()
    assert availability.reason.startswith("RAPL: ")


def test_tree_without_rapl_zones(tree: FakePowercapTree) -> None:
    availability = _meter(tree).is_available()
    assert not availability.available
    assert "no package, package-die or psys zones" in availability.reason


def test_permission_denied_reason_names_the_file_and_fix(tree: FakePowercapTree) -> None:
    tree.add_socket(0)
    tree.make_unreadable(tree.package_zone(0))
    meter = _meter(tree)
    availability = meter.is_available()
    assert not availability.available
    assert str(tree.package_zone(0) / "energy_uj") in availability.reason
    assert "sudo chmod -R a+r /sys/class/powercap/intel-rapl*" in availability.reason
    assert "CVE-2020-8694" in availability.reason
    with pytest.raises(MeterError, match="not readable"):
        meter.open(0.0)


def test_unreadable_dram_keeps_cpu(tree: FakePowercapTree) -> None:
    tree.add_socket(0)
    tree.make_unreadable(tree.dram_zone(0))
    meter = _meter(tree)
    availability = meter.is_available()
    assert availability.available and availability.components == {"cpu"}
    meter.open(0.0)
    assert [c.device_id for c in meter.read(1.0)] == ["cpu:0"]


def test_zone_failing_mid_run_is_extrapolated(tree: FakePowercapTree) -> None:
    tree.add_socket(0, dram=False)
    tree.add_socket(1, dram=False)
    meter = _meter(tree)
    meter.open(0.0)
    tree.advance(0, package_j=100.0)
    tree.advance(1, package_j=100.0)
    meter.read(10.0)  # both at 10 W so far
    tree.make_unreadable(tree.package_zone(1))
    tree.advance(0, package_j=100.0)
    counters = {c.device_id: c for c in meter.read(20.0)}
    assert counters["cpu:0"].energy_j == pytest.approx(200.0)
    assert counters["cpu:0"].provenance == "counter"
    failed = counters["cpu:1"]
    assert failed.provenance == "estimate"
    assert failed.energy_j == pytest.approx(200.0)  # 100 J + 10 W × 10 s
    assert "energy_uj" in failed.note and "10.0 W" in failed.note


def test_read_before_open_raises(tree: FakePowercapTree) -> None:
    tree.add_socket(0)
    with pytest.raises(MeterError):
        _meter(tree).read(0.0)


def test_fake_read_text_denies_as_root_too(tree: FakePowercapTree) -> None:
    tree.add_socket(0)
    tree.make_unreadable(tree.package_zone(0))
    with pytest.raises(PermissionError):
        tree.read_text(tree.package_zone(0) / "energy_uj")
    assert tree.read_text(tree.package_zone(0) / "name").strip() == "package-0"


# -- multi-die packages and psys -------------------------------------------------------------


def test_die_zones_are_read_and_summed_per_socket(tree: FakePowercapTree) -> None:
    """The issue's case: zones named package-N-die-D were rejected with "no RAPL driver"."""
    tree.add_dies(0, 2, energy_uj=50 * MJ, dram=True)
    tree.add_dies(1, 2, energy_uj=70 * MJ)
    meter = _meter(tree)
    availability = meter.is_available()
    assert availability.available and availability.provenance == "counter"
    assert "2 sockets of 2 dies" in availability.reason
    meter.open(0.0)
    tree.advance_dies(0, [30.0, 10.0])
    tree.advance_dies(1, [5.0, 5.0])
    tree.advance_zone(tree.die_zone(0, 1) / f"{tree.die_zone(0, 1).name}:0", 2.0)  # die 1's DRAM
    assert _by_id(meter, 1.0) == pytest.approx({"cpu:0": 40.0, "ram:0": 2.0, "cpu:1": 10.0})


def test_dies_mirroring_one_package_counter_are_counted_once(tree: FakePowercapTree) -> None:
    tree.add_dies(0, 4, mirrored=True, energy_uj=123_456 * MJ)
    meter = _meter(tree)
    meter.open(0.0)
    tree.advance_dies(0, [100.0])  # each of the 4 zones shows the package's 100 J
    assert _by_id(meter, 1.0) == pytest.approx({"cpu:0": 100.0})
    tree.advance_dies(0, [50.0])
    assert _by_id(meter, 2.0) == pytest.approx({"cpu:0": 150.0})


def test_psys_is_never_added_to_the_packages(tree: FakePowercapTree) -> None:
    tree.add_dies(0, 2, energy_uj=9 * MJ)
    psys = tree.add_psys()
    meter = _meter(tree)
    assert "psys (whole platform) not added" in meter.is_available().reason
    meter.open(0.0)
    tree.advance_dies(0, [20.0, 20.0])
    tree.advance_zone(psys, 95.0)
    assert _by_id(meter, 1.0) == pytest.approx({"cpu:0": 40.0})


def test_psys_alone_is_read_as_the_platform_and_says_so(tree: FakePowercapTree) -> None:
    psys = tree.add_psys(energy_uj=7 * MJ)
    meter = _meter(tree)
    availability = meter.is_available()
    assert availability.available and "reading psys, the whole platform" in availability.reason
    meter.open(0.0)
    tree.advance_zone(psys, 30.0)
    (counter,) = meter.read(1.0)
    assert (counter.device_id, counter.energy_j, counter.label) == ("cpu:psys", 30.0, "platform (psys)")
    assert "whole platform" in counter.note


# -- scope="process" ---------------------------------------------------------------------------

FLOOR_W, PER_CORE_W = 20.0, 15.0


def _process_meter(tree: FakePowercapTree, machine: FakeMachine) -> RaplMeter:
    meter = RaplMeter(tree.root, read_text=tree.read_text, cpu_times=machine.cpu_times)
    meter.attribute(Attribution("process", machine.tree))
    meter.open(0.0)
    return meter


def _run(tree: FakePowercapTree, machine: FakeMachine, seconds: float, tree_cpu_s: float, other_cpu_s: float) -> None:
    """The package draws its floor plus 15 W per busy core; DRAM 2 W."""
    machine.advance(seconds, tree_cpu_s=tree_cpu_s, other_cpu_s=other_cpu_s)
    tree.advance(0, package_j=FLOOR_W * seconds + PER_CORE_W * (tree_cpu_s + other_cpu_s), dram_j=2.0 * seconds)


def test_process_scope_splits_floor_by_capacity_and_the_rest_by_busy_time(tree: FakePowercapTree) -> None:
    tree.add_socket(0)
    machine = FakeMachine(cpus=2, rss_bytes=hardware.total_ram_bytes() // 4)
    meter = _process_meter(tree, machine)
    assert meter.poll_interval_s == 1.0
    assert meter.label("cpu", "counter") == "rapl-counter*cpu-time" and meter.label("ram", "counter") == "rapl-counter*rss"
    _run(tree, machine, 10.0, tree_cpu_s=0.0, other_cpu_s=0.0)  # idle: the floor is learnt (20 W)
    assert _by_id(meter, 10.0) == pytest.approx({"cpu:0": 0.0, "ram:0": 0.25 * 20.0})
    _run(tree, machine, 10.0, tree_cpu_s=5.0, other_cpu_s=5.0)  # 200 J floor + 150 J above it
    counters = {c.device_id: c for c in meter.read(20.0)}
    # floor × 5/20 of the capacity + above-floor × 5/10 of the busy time
    assert counters["cpu:0"].energy_j == pytest.approx(200.0 * 0.25 + 150.0 * 0.5)
    assert (counters["cpu:0"].share, counters["cpu:0"].scope, counters["ram:0"].share) == ("cpu-time", "process", "rss")


def test_nearly_idle_process_beside_a_hog_is_billed_as_if_alone(tree: FakePowercapTree, tmp_path: Path) -> None:
    other = FakePowercapTree(tmp_path / "other")
    tree.add_socket(0)
    other.add_socket(0)
    alone, beside = FakeMachine(cpus=2), FakeMachine(cpus=2)
    alone_meter, beside_meter = _process_meter(tree, alone), _process_meter(other, beside)
    for machine, powercap, meter in ((alone, tree, alone_meter), (beside, other, beside_meter)):
        _run(powercap, machine, 5.0, 0.0, 0.0)  # a moment of idle before the fit
        meter.read(5.0)
    _run(tree, alone, 10.0, tree_cpu_s=0.2, other_cpu_s=0.0)
    _run(other, beside, 10.0, tree_cpu_s=0.2, other_cpu_s=10.0)  # another process hogs one core
    alone_j, beside_j = _by_id(alone_meter, 15.0)["cpu:0"], _by_id(beside_meter, 15.0)["cpu:0"]
    assert 1 / 1.5 <= beside_j / alone_j <= 1.5
    assert alone_j == pytest.approx(200.0 * 0.2 / 20 + 3.0)  # its capacity share of the floor + its own 3 J


def test_a_sleeping_process_is_billed_nothing_of_an_idle_package(tree: FakePowercapTree) -> None:
    tree.add_socket(0)
    machine = FakeMachine(cpus=2)
    meter = _process_meter(tree, machine)
    _run(tree, machine, 10.0, tree_cpu_s=0.0, other_cpu_s=0.0)
    assert _by_id(meter, 10.0) == {"cpu:0": 0.0, "ram:0": 0.0}
    machine_meter = RaplMeter(tree.root, read_text=tree.read_text)
    assert machine_meter.label("cpu", "counter") == "rapl-counter"
