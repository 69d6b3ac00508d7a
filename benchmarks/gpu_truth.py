"""GPU truth: NVML's energy counter (as mlflow-green reads it) against 100 ms sampled power, on a real GPU.

One prepared run on an NVIDIA GPU:

1. A matmul load (bf16, 8192²) runs on ``cuda:<device>`` for ``--seconds`` (60 by default) while
   mlflow-green's tracker measures it (``scope="process"``: this process holds the context)
   and, independently, a thread samples ``nvmlDeviceGetPowerUsage`` every 100 ms; the two
   energies are printed side by side with their agreement.
2. Windows of 0.25 s and 1 s inside the load: each window's counter energy against the
   sampled-power integral over the same interval; the spread is printed, with how many windows
   mlflow-green flagged as shorter than 10 counter update periods.

It needs torch with CUDA, nvidia-ml-py and an NVIDIA driver; without them it says what is
missing and exits 2. ``--fake`` runs the same analysis on a FakeNVML GPU (a 100 ms counter at
300 W, no torch) to check the script itself on any machine.

Usage::

    python benchmarks/gpu_truth.py [--seconds 60] [--device 0] [--windows 20]
    python benchmarks/gpu_truth.py --fake --seconds 5
"""

from __future__ import annotations

import argparse
import bisect
import importlib.util
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from mlflow_green import EnergyTracker
from mlflow_green.measure import hardware
from mlflow_green.measure.meters.nvml import NvmlMeter
from mlflow_green.testing import FakeGPU, FakeNVML, FakeProcess

SAMPLE_INTERVAL_S = 0.1


class PowerSampler:
    """An independent 100 ms ``nvmlDeviceGetPowerUsage`` sampler (not mlflow-green's code path)."""

    def __init__(self, nvml: Any, handle: Any, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.nvml, self.handle, self.interval_s = nvml, handle, interval_s
        self.times_s: list[float] = []
        self.powers_w: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        next_s = time.monotonic()
        while not self._stop.is_set():
            self.times_s.append(time.monotonic())
            self.powers_w.append(int(self.nvml.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0)
            next_s += self.interval_s
            self._stop.wait(max(next_s - time.monotonic(), 0.0))

    def __enter__(self) -> PowerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def energy_j(self, start_s: float, end_s: float) -> float:
        """Trapezoidal integral of the samples over ``[start_s, end_s]`` (interpolated at the ends)."""
        def power_at(t_s: float) -> float:
            i = bisect.bisect_right(self.times_s, t_s)
            if i == 0:
                return self.powers_w[0]
            if i == len(self.times_s):
                return self.powers_w[-1]
            t0, t1 = self.times_s[i - 1], self.times_s[i]
            return self.powers_w[i - 1] + (self.powers_w[i] - self.powers_w[i - 1]) * (t_s - t0) / (t1 - t0)

        points = [start_s] + [t for t in self.times_s if start_s < t < end_s] + [end_s]
        return sum(0.5 * (power_at(a) + power_at(b)) * (b - a) for a, b in zip(points, points[1:]))


def _missing() -> str | None:
    """Why this machine cannot run the real benchmark, or None."""
    if importlib.util.find_spec("pynvml") is None:
        return "nvidia-ml-py is not installed (pip install nvidia-ml-py; it comes with mlflow-green)"
    problem = hardware.nvml_library_error()
    if problem is not None:
        return f"no NVIDIA driver ({problem})"
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA device (a CPU build of torch, or no GPU)"
    return None


def _real(device: int) -> tuple[Any, Any, Callable[[float], None], Callable[[], None], str]:
    """pynvml, the NVML handle of ``cuda:<device>``, a load runner, a synchronize, and its name."""
    import pynvml
    import torch
    from _nvml_handle import nvml_handle_of

    cuda = torch.device("cuda", device)
    a = torch.randn(8192, 8192, device=cuda, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=cuda, dtype=torch.bfloat16)
    torch.cuda.synchronize(cuda)
    pynvml.nvmlInit()
    handle = nvml_handle_of(pynvml, cuda)

    def load(seconds: float) -> None:
        end_s = time.monotonic() + seconds
        while time.monotonic() < end_s:
            for _ in range(8):
                torch.matmul(a, b)
            torch.cuda.synchronize(cuda)

    return pynvml, handle, load, lambda: torch.cuda.synchronize(cuda), hardware.text(pynvml.nvmlDeviceGetName(handle))


def _fake() -> tuple[Any, Any, Callable[[float], None], Callable[[], None], str]:
    """The same shape on a FakeNVML GPU: a 100 ms counter at 300 W held by this process."""
    import os

    nvml = FakeNVML([FakeGPU("GPU-fake-truth", name="FakeNVML 300 W", power_w=300.0, update_period_s=0.1,
                             processes=[FakeProcess(os.getpid())])])
    nvml.nvmlInit()
    return nvml, nvml.nvmlDeviceGetHandleByIndex(0), time.sleep, lambda: None, "FakeNVML 300 W (--fake)"


def _percent(measured: float, reference: float) -> float:
    return 100.0 * (measured - reference) / reference if reference else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the sustained load")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")
    parser.add_argument("--windows", type=int, default=20, help="windows of each length to check")
    parser.add_argument("--fake", action="store_true", help="check the script on a FakeNVML GPU")
    args = parser.parse_args()
    if not args.fake:
        missing = _missing()
        if missing is not None:
            print(f"gpu_truth: needs an NVIDIA GPU — {missing}. Not run: no figure was produced.", file=sys.stderr)
            return 2
    nvml, handle, load, synchronize, name = _fake() if args.fake else _real(args.device)
    meter = NvmlMeter(nvml=nvml, environ={}) if args.fake else NvmlMeter()
    tracker = EnergyTracker(meters=[meter], region="FRA", synchronize=synchronize)
    print(f"gpu_truth on {name}: {args.seconds:g} s load, power sampled every {SAMPLE_INTERVAL_S * 1000:.0f} ms")
    lengths_s = (0.25, 1.0)
    with PowerSampler(nvml, handle) as sampler:
        load(1.0)  # warm up: clocks and power settle
        tracker.start()
        with tracker.window("sustained"):
            load(args.seconds)
        for length_s in lengths_s:
            for i in range(args.windows):
                with tracker.window(f"{length_s:g}s-{i}"):
                    load(length_s)
        total = tracker.stop()
    origin_s = tracker.start_snapshot.timestamp_s

    def compare(record: Any) -> tuple[float, float]:
        """(counter J, sampled J) over one window, on the tracker's own snapshot times."""
        begin_s = origin_s + record.start_offset_s
        measured = record.measurement
        return measured.component_energy_j("gpu"), sampler.energy_j(begin_s, begin_s + measured.duration_s)

    sustained = tracker.windows[0]
    counter_j, sampled_j = compare(sustained)
    duration_s = sustained.measurement.duration_s
    gpu = next((d for d in total.devices if d.component == "gpu"), None)
    print(f"  counter update period learnt: {tracker.counter_update_period_s or float('nan'):.3f} s")
    print(f"  billed as: {gpu.basis if gpu else 'NOT BILLED'} (scope {gpu.scope if gpu else '-'})")
    print(f"  sustained load, {duration_s:.1f} s:")
    print(f"    energy counter (mlflow-green)   {counter_j:12.1f} J   {counter_j / duration_s:7.1f} W")
    print(f"    sampled power every 100 ms      {sampled_j:12.1f} J   {sampled_j / duration_s:7.1f} W")
    print(f"    agreement: counter - sampled = {_percent(counter_j, sampled_j):+.2f} %")
    coarse = {c["window"] for c in tracker.granularity.coarse}
    for length_s in lengths_s:
        records = [w for w in tracker.windows if w.name.startswith(f"{length_s:g}s-")]
        pairs = [compare(w) for w in records]
        errors = [_percent(c, s) for c, s in pairs]
        print(
            f"  {length_s:g} s windows ({len(records)}): counter vs sampled  mean {statistics.fmean(errors):+.2f} %, "
            f"spread ±{max(abs(e) for e in errors):.2f} %, zero-energy windows {sum(c == 0 for c, _ in pairs)}, "
            f"flagged coarse {sum(w.name in coarse for w in records)}/{len(records)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
