"""RaplMeter against a fake powercap tree: sockets, DRAM, wraparound, permissions."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_green.errors import MeterError
from mlflow_green.measure import hardware
from mlflow_green.measure.meters.rapl import MAX_POLL_INTERVAL_S, MIN_POLL_INTERVAL_S, RaplMeter
from mlflow_green.measure.readings import Snapshot
from mlflow_green.testing import FakePowercapTree

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
    assert "2 socket(s)" in availability.reason

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
    assert "no intel-rapl package zones" in availability.reason


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
