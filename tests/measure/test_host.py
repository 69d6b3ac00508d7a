"""Host identity = hostname + machine id: two hosts with one hostname stay two hosts."""

from __future__ import annotations

import socket
from pathlib import Path

from mlflow_green import EnergyTracker
from mlflow_green.measure.host import host_id, host_identity, hostname_of, read_machine_id
from mlflow_green.measure.readings import DeviceEnergy, Measurement
from mlflow_green.record.report import hosts_dict
from mlflow_green.testing import FakeMeter


def test_machine_id_prefers_systemd_then_dbus_then_boot_id(tmp_path: Path) -> None:
    machine, dbus, boot = tmp_path / "machine-id", tmp_path / "dbus-id", tmp_path / "boot_id"
    boot.write_text("b67029f9-40e4-4258-bcf4-f53057b472a7\n")
    paths = [machine, dbus, boot]
    assert read_machine_id(paths) == "b67029f940e44258bcf4f53057b472a7"  # no machine-id: the boot id
    machine.write_text("\n")  # empty (a container image): skipped
    dbus.write_text("00000000000000000000000000000000\n")  # placeholder: skipped
    assert read_machine_id(paths) == "b67029f940e44258bcf4f53057b472a7"
    machine.write_text("3D1219C7C4C5404AAA1F6D2A48ADFDA4\n")
    assert read_machine_id(paths) == "3d1219c7c4c5404aaa1f6d2a48adfda4"
    assert read_machine_id([tmp_path / "missing"]) == ""


def test_identity_is_hostname_plus_machine_id() -> None:
    assert host_identity("worker", "3d1219c7c4c5404a") == "worker/3d1219c7c4c5"
    assert host_identity("", "") == "unknown-host"
    assert hostname_of(host_identity("worker", "ab")) == "worker"


def test_tracker_readings_carry_the_host_identity() -> None:
    tracker = EnergyTracker(meters=[FakeMeter({"cpu:0": 10.0, "ram:0": 1.0})])
    tracker.start()
    total = tracker.stop()
    assert tracker.host == host_id()
    assert hostname_of(tracker.host) == socket.gethostname()
    if read_machine_id():  # every Linux host has /etc/machine-id or a boot id
        assert tracker.host != socket.gethostname()
    assert {d.host for d in total.devices} == {host_id()}


def test_two_hosts_with_one_hostname_keep_both_cpus_and_rams() -> None:
    """The issue's case: ranks on two hosts both named ``worker`` lost one host's CPU and RAM."""

    def rank(machine: str, cpu_j: float) -> Measurement:
        devices = (
            DeviceEnergy("cpu:0", "cpu", "rapl", "counter", cpu_j, 10.0),
            DeviceEnergy("ram:0", "ram", "rapl", "counter", cpu_j / 10, 10.0),
        )
        return Measurement(10.0, devices).with_host(host_identity("worker", machine))

    merged = rank("aaaa1111bbbb2222", 500.0).merge_parallel(rank("cccc3333dddd4444", 700.0))
    assert merged.component_energy_j("cpu") == 1200.0
    assert merged.component_energy_j("ram") == 120.0
    assert sorted(hosts_dict(merged)) == ["worker/aaaa1111bbbb", "worker/cccc3333dddd"]
