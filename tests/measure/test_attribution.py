"""Process trees and shares with real processes: children that start and exit mid-window, a CPU hog."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from mlflow_green.measure.attribution import Attribution, ProcessTree, UsageProbe
from mlflow_green.measure.meters.estimate import EstimateMeter
from mlflow_green.measure.power_model import PowerModel
from mlflow_green.measure.shares import FloorTracker, UsageDelta, busy_share, capacity_share, split_package
from mlflow_green.testing import FakeMachine

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\nprint(time.process_time())"
HOG = "while True: pass"


def _burn(seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", BURN.format(s=seconds)], stdout=subprocess.PIPE, text=True)


def test_a_child_that_starts_and_exits_inside_the_window_is_billed() -> None:
    tree = ProcessTree()
    before = tree.cpu_seconds()
    child = _burn(0.3)
    child_cpu_s = float(child.communicate()[0])  # waited for: reaped, its time now in ours
    assert tree.cpu_seconds() - before == pytest.approx(child_cpu_s, abs=0.15)
    assert child_cpu_s >= 0.3


def test_a_child_that_exits_mid_window_is_not_billed_twice() -> None:
    tree = ProcessTree()
    child = _burn(0.6)
    deadline = time.monotonic() + 20.0
    while _hog_cpu_s(child) < 0.2 and time.monotonic() < deadline:  # wait until it has burnt some
        time.sleep(0.02)
    assert child.pid in tree.pids()
    during = tree.cpu_seconds()  # counts the child's time so far
    child_cpu_s = float(child.communicate()[0])
    after = tree.cpu_seconds()
    assert child.pid not in tree.pids()
    assert 0 <= after - during <= child_cpu_s - 0.1  # only what it burnt after `during`, not all of it again


def _hog_cpu_s(hog: subprocess.Popen) -> float:  # type: ignore[type-arg]
    times = psutil.Process(hog.pid).cpu_times()
    return times.user + times.system


def test_excluded_processes_are_not_billed() -> None:
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    try:
        mine, everything = ProcessTree(exclude_pids=frozenset({hog.pid})), ProcessTree()
        assert hog.pid in everything.pids() and hog.pid not in mine.pids()
        a_mine, a_all, a_hog = mine.cpu_seconds(), everything.cpu_seconds(), _hog_cpu_s(hog)
        deadline = time.monotonic() + 20.0
        while _hog_cpu_s(hog) - a_hog < 0.3 and time.monotonic() < deadline:  # a busy machine is slower
            time.sleep(0.05)
        hog_s = _hog_cpu_s(hog) - a_hog
        assert hog_s >= 0.3
        assert (everything.cpu_seconds() - a_all) - (mine.cpu_seconds() - a_mine) >= hog_s - 0.05
        assert mine.rss_bytes() < everything.rss_bytes()
    finally:
        hog.kill()
        hog.wait()


def test_nearly_idle_process_beside_a_real_hog() -> None:
    """A real CPU hog in another process: the process share barely moves, the machine estimate jumps."""
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    try:
        machine_meter = EstimateMeter(model=PowerModel.example())
        process_meter = EstimateMeter(model=PowerModel.example())
        machine_meter.attribute(Attribution("machine"))
        process_meter.attribute(Attribution("process", ProcessTree(exclude_pids=frozenset({hog.pid}))))
        start = time.monotonic()
        machine_meter.open(start)
        process_meter.open(start)
        time.sleep(1.0)
        now = time.monotonic()
        process_cpu_j = process_meter.read(now)[0].energy_j
        machine_cpu_j = machine_meter.read(now)[0].energy_j
    finally:
        hog.kill()
        hog.wait()
    # 100 W TDP, 8 threads in the example model: one busy core is ≥ 12.5 % of the machine's load
    assert machine_cpu_j >= 10.0 * (now - start)
    assert process_cpu_j < 0.1 * machine_cpu_j


def test_usage_probe_on_this_machine() -> None:
    usage = UsageProbe(ProcessTree()).read()
    assert usage.tree_cpu_s > 0 and usage.tree_rss_bytes > 0
    assert usage.machine_capacity_s >= usage.machine_busy_s >= usage.tree_cpu_s * 0  # all non-negative


def test_share_arithmetic_on_an_idle_machine() -> None:
    machine = FakeMachine(cpus=4)
    probe = UsageProbe(machine.tree, machine.cpu_times)
    a = probe.read()
    machine.advance(10.0)
    idle = UsageDelta.between(a, probe.read(), 10.0)
    assert busy_share(idle) == 0.0 and capacity_share(idle) == 0.0
    assert split_package(100.0, 10.0, 5.0, idle) == 0.0  # nobody used the CPU: the process pays nothing
    skew = UsageDelta(tree_cpu_s=0.01, busy_s=0.0, capacity_s=40.0, duration_s=10.0)
    assert busy_share(skew) == 1.0  # the machine's ticks missed it, the process's did not
    assert split_package(-1.0, 10.0, 5.0, skew) == 0.0


def test_floor_learns_only_from_long_intervals() -> None:
    floor = FloorTracker()
    assert floor.observe(1.0, 0.1) == pytest.approx(10.0)  # nothing learned yet: its own power
    assert floor.floor_w is None
    assert floor.observe(200.0, 10.0) == 20.0
    assert floor.observe(0.0, 0.01) == 20.0  # a tick-short interval reading 0 J teaches nothing
    assert floor.observe(50.0, 0.0) == 20.0
