"""CodeCarbonMeter with the real CodeCarbon offline tracker: no network, no files."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mlflow_green.errors import ConfigError, MeterError
from mlflow_green.measure.meters.codecarbon_meter import MIN_SAMPLE_INTERVAL_S, CodeCarbonMeter
from mlflow_green.measure.readings import Snapshot

_NETWORK_EVENTS = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto", "urllib.Request")
_watching: list[list[str]] = []
_earlier_threads: set[int] = set()  # threads other tests left running (a writer retrying a stopped server): not watched


def _audit(event: str, args: Any) -> None:
    if _watching and event in _NETWORK_EVENTS and threading.get_ident() not in _earlier_threads:
        _watching[-1].append(f"{event} {args!r}")


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one is inert unless watching


def test_offline_tracker_reads_cumulative_energy_without_network_or_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    network: list[str] = []
    _earlier_threads.update(t.ident for t in threading.enumerate() if t is not threading.current_thread() and t.ident)
    _watching.append(network)
    socket.getaddrinfo("localhost", None)  # prove the watch sees a lookup...
    assert network and network.pop().startswith("socket.getaddrinfo")  # ...then expect none
    meter = CodeCarbonMeter()
    try:
        availability = meter.is_available()
        assert availability.available
        assert availability.reason.startswith("CodeCarbon ") and "meters=" in availability.reason

        start_s = time.monotonic()
        meter.open(start_s)
        first = meter.read(time.monotonic())
        time.sleep(0.3)
        meter.poll(time.monotonic())
        time.sleep(0.3)
        second = meter.read(time.monotonic())
    finally:
        meter.close()
        _watching.pop()

    assert network == []
    assert list(tmp_path.iterdir()) == []  # no emissions.csv, no lock file in cwd
    ids = {c.device_id for c in second}
    assert {"cpu:codecarbon", "ram:codecarbon"} <= ids
    assert ids <= {"cpu:codecarbon", "ram:codecarbon", "gpu:codecarbon"}
    before = {c.device_id: c.energy_j for c in first}
    for counter in second:
        assert counter.meter == "codecarbon"
        assert counter.energy_j >= before[counter.device_id] >= 0.0
    assert {c.device_id: c.provenance for c in second}["ram:codecarbon"] == "estimate"
    window = Snapshot(1.0, second) - Snapshot(0.0, first)
    assert window.energy_j > 0.0


def test_never_chosen_automatically() -> None:
    from mlflow_green.measure.meters.estimate import EstimateMeter
    from mlflow_green.measure.selection import select_meters

    selection = select_meters([CodeCarbonMeter(), EstimateMeter()])
    assert selection.assignments["cpu"].name == "estimate"
    assert selection.assignments["ram"].name == "estimate"
    named = select_meters([CodeCarbonMeter(), EstimateMeter()], explicit_order=True)
    assert named.assignments["cpu"].name == "codecarbon"


def test_read_before_open_and_close_twice() -> None:
    meter = CodeCarbonMeter()
    with pytest.raises(MeterError):
        meter.read(0.0)
    meter.close()
    meter.close()


def test_sample_interval() -> None:
    meter = CodeCarbonMeter()
    meter.configure(sample_interval_s=0.1)  # the tracker's default, below CodeCarbon's 1 Hz
    assert meter.poll_interval_s == MIN_SAMPLE_INTERVAL_S
    meter.configure(sample_interval_s=15.0)
    assert meter.poll_interval_s == 15.0
    with pytest.raises(ConfigError):
        meter.configure(sample_interval_s=0.0)


def test_importing_the_meter_does_not_import_codecarbon() -> None:
    import subprocess

    code = (
        "import sys, mlflow_green.measure.meters.codecarbon_meter as m; m.CodeCarbonMeter().is_available(); "
        "assert 'codecarbon' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_process_scope_runs_codecarbons_process_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow_green.measure.attribution import Attribution

    monkeypatch.chdir(tmp_path)
    meter = CodeCarbonMeter()
    meter.attribute(Attribution("process"))
    assert meter.label("cpu", "estimate") == "codecarbon*cpu-time" and meter.label("ram", "estimate") == "codecarbon*rss"
    try:
        meter.open(time.monotonic())
        assert meter._tracker._tracking_mode == "process"
        time.sleep(0.3)
        counters = {c.component: c for c in meter.read(time.monotonic())}
    finally:
        meter.close()
    assert (counters["cpu"].scope, counters["cpu"].share) == ("process", "cpu-time")
    assert (counters["ram"].scope, counters["ram"].share) == ("process", "rss")
    machine = CodeCarbonMeter()
    machine.attribute(Attribution("machine"))
    assert machine.label("cpu", "estimate") == "codecarbon"
