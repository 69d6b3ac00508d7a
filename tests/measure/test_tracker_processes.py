"""The tracker and its process tree: a worker started just before the last read is billed, and a
stopped tracker lets go of the reader's thread and descriptors (found by an adversarial probe)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from mlflow_green import EnergyTracker
from mlflow_green.measure.meters.estimate import EstimateMeter

BURN_THEN_SLEEP = (
    "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"
    "print(time.process_time(), flush=True)\ntime.sleep(60)\n"
)


def _lookers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mlflow-green-process-looker" and t.is_alive()]


def test_a_worker_started_less_than_a_look_interval_before_stop_is_billed_by_the_last_read() -> None:
    meter = EstimateMeter(tdp_w=20.0)
    tracker = EnergyTracker(meters=[meter])
    tracker.start()
    child = subprocess.Popen([sys.executable, "-c", BURN_THEN_SLEEP], stdout=subprocess.PIPE, text=True)
    try:
        child_cpu_s = float(child.stdout.readline())  # type: ignore[union-attr]
        total = tracker.stop()  # alive still, and started well under a second ago on a fast machine
    finally:
        child.kill()
        child.wait()
    cpus = meter.model().logical_cpus
    assert total.component_energy_j("cpu") >= 0.9 * 20.0 / cpus * child_cpu_s


def test_a_stopped_tracker_keeps_no_reader_thread_and_no_descriptors() -> None:
    fds_before, lookers_before = len(os.listdir("/proc/self/fd")), set(_lookers())  # other tests' live trackers
    for _ in range(100):
        tracker = EnergyTracker(meters=["estimate"])
        tracker.start()
        tracker.snapshot()
        assert tracker.processes._scanner._looker is not None  # reading: its looker runs
        tracker.stop()
        assert tracker.processes._scanner._looker is None
    deadline = time.monotonic() + 2.0
    while set(_lookers()) - lookers_before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not set(_lookers()) - lookers_before
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 5
