"""CPU cost of the background sampler thread at 10 Hz, as a percentage of one core.

A tracker is started with a GPU that has no energy counter (a FakeNVML power-only device), so
its sampler thread polls power every 0.1 s in real time while the main thread sleeps. The
thread's own CPU time (user + system, from the kernel's per-thread accounting via psutil) over
the wall time is the figure. A real ``nvmlDeviceGetPowerUsage`` call costs more than the
fake's (tens of microseconds on the GPUs we know); at 10 Hz that adds well under 0.1 %.

Usage::

    python benchmarks/sampler_overhead.py [--seconds 20] [--interval-s 0.1]
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import psutil

from mlflow_green import EnergyTracker
from mlflow_green.measure.meters.nvml import NvmlMeter
from mlflow_green.testing import FakeGPU, FakeNVML, FakeProcess

BUDGET_PERCENT = 0.5


def _sampler_cpu_s() -> float:
    thread = next(t for t in threading.enumerate() if t.name == "mlflow-green-sampler")
    for info in psutil.Process().threads():
        if info.id == thread.native_id:
            return info.user_time + info.system_time
    raise RuntimeError("sampler thread not found in the process's thread list")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval-s", type=float, default=0.1)
    args = parser.parse_args()
    # A power-only GPU on which this process holds a context (as a training would): billed under
    # the default scope="process".
    gpu = FakeGPU("GPU-overhead", power_w=250.0, has_energy_counter=False, processes=[FakeProcess(os.getpid())])
    nvml = FakeNVML([gpu])
    tracker = EnergyTracker(meters=[NvmlMeter(nvml=nvml, environ={})], sample_interval_s=args.interval_s)
    tracker.start()
    cpu0_s, wall0_s = _sampler_cpu_s(), time.monotonic()
    time.sleep(args.seconds)
    cpu_s, wall_s = _sampler_cpu_s() - cpu0_s, time.monotonic() - wall0_s
    total = tracker.stop()
    percent = 100.0 * cpu_s / wall_s
    print(f"sampler thread at {1 / args.interval_s:g} Hz for {wall_s:.1f} s")
    print(f"  CPU time {cpu_s * 1000:.1f} ms = {percent:.3f} % of one core   (budget ≤ {BUDGET_PERCENT} %)")
    print(f"  GPU energy integrated: {total.component_energy_j('gpu'):.1f} J (expected {250.0 * total.duration_s:.1f} J)")
    print("  verdict:", "within budget" if percent <= BUDGET_PERCENT else "OVER BUDGET")


if __name__ == "__main__":
    main()
