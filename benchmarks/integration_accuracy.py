"""Energy integration error of the sampled-power path on synthetic stepped power traces.

A GPU without an energy counter is sampled (``nvmlDeviceGetPowerUsage``) and integrated with
the trapezoidal rule by :class:`~mlflow_green.measure.meters.nvml.NvmlMeter`. Here the GPU is a
:class:`~mlflow_green.testing.FakeNVML` device whose power follows a random stepped trace
(levels 50–400 W, steps every 0.2–5 s), on a manual clock so a 60 s trace runs in
milliseconds. The meter is polled at each sampling interval, each sample late by a random
0–5 ms as a real thread wakes up late; the exact energy is the trace's integral.

Usage::

    python benchmarks/integration_accuracy.py [--traces 50] [--duration-s 60]
"""

from __future__ import annotations

import argparse
import bisect
import random
import statistics

from mlflow_green.measure.meters.nvml import NvmlMeter
from mlflow_green.testing import FakeGPU, FakeNVML, ManualClock

INTERVALS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
BUDGET_PERCENT = 0.5  # at 0.1 s on a 60 s trace


class SteppedTrace:
    """Piecewise-constant power: ``levels_w[i]`` from ``edges_s[i]`` to ``edges_s[i + 1]``."""

    def __init__(self, rng: random.Random, duration_s: float) -> None:
        self.edges_s = [0.0]
        self.levels_w = [rng.uniform(50.0, 400.0)]
        while self.edges_s[-1] < duration_s:
            self.edges_s.append(self.edges_s[-1] + rng.uniform(0.2, 5.0))
            self.levels_w.append(rng.uniform(50.0, 400.0))

    def __call__(self, t_s: float) -> float:
        return self.levels_w[max(bisect.bisect_right(self.edges_s, t_s) - 1, 0)]

    def energy_j(self, start_s: float, end_s: float) -> float:
        total = 0.0
        for i, level in enumerate(self.levels_w):
            lo = max(self.edges_s[i], start_s)
            hi = min(self.edges_s[i + 1] if i + 1 < len(self.edges_s) else float("inf"), end_s)
            if hi > lo:
                total += level * (hi - lo)
        return total


def error_percent(rng: random.Random, interval_s: float, duration_s: float) -> float:
    trace = SteppedTrace(rng, duration_s + 1.0)
    clock = ManualClock(0.0)
    nvml = FakeNVML([FakeGPU("GPU-bench", power_w=trace, has_energy_counter=False)], clock=clock)
    meter = NvmlMeter(nvml=nvml, environ={}, sample_interval_s=interval_s)
    start_s = rng.uniform(0.0, interval_s)
    clock.set(start_s)
    meter.open(clock())
    k = 1
    while start_s + k * interval_s < start_s + duration_s:
        clock.set(start_s + k * interval_s + rng.uniform(0.0, 0.005))
        meter.poll(clock())
        k += 1
    clock.set(start_s + duration_s)
    measured_j = meter.read(clock())[0].energy_j
    meter.close()
    exact_j = trace.energy_j(start_s, start_s + duration_s)
    return 100.0 * (measured_j - exact_j) / exact_j


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=50)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"integration error on {args.traces} stepped traces of {args.duration_s:g} s each (seed {args.seed})")
    print(f"  {'interval':>9}  {'mean |err|':>10}  {'p95 |err|':>9}  {'max |err|':>9}")
    verdict = ""
    for interval_s in INTERVALS_S:
        errors = sorted(abs(error_percent(rng, interval_s, args.duration_s)) for _ in range(args.traces))
        p95 = errors[int(0.95 * (len(errors) - 1))]
        print(f"  {interval_s:>8g}s  {statistics.mean(errors):>9.3f}%  {p95:>8.3f}%  {errors[-1]:>8.3f}%")
        if interval_s == 0.1:
            verdict = "within budget" if errors[-1] <= BUDGET_PERCENT else "OVER BUDGET"
    print(f"  budget: max |err| ≤ {BUDGET_PERCENT}% at 0.1 s — {verdict}")


if __name__ == "__main__":
    main()
