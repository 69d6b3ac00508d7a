"""GPU shared with another process: what ``scope="process"`` bills, against the whole device, on a real GPU.

One prepared run on an NVIDIA GPU. A *neighbour* process, outside this process tree (started
through a shell that exits, so it is not our child), holds a CUDA context on the same GPU. Four
phases of ``--phase-seconds`` each (15 by default), measured at once by two trackers of this
process — ``scope="process"`` (what a run is billed) and ``scope="machine"`` (the whole GPU):

0. ``both idle``: both processes hold a context and do nothing.
1. ``alone``: this process runs a bf16 matmul load; the neighbour holds its context, idle.
2. ``shared``: both run the same load (the GPU time-slices them: about half each).
3. ``neighbour only``: this process holds its context, idle; the neighbour runs the load.

For each phase it prints the whole-GPU energy, this process's bill, their ratio and the basis
the bill is labelled with; what NVML reports raw (the running-process PIDs against ours, and
``nvmlDeviceGetProcessUtilization``) is printed once per phase, so a container that hides PIDs
shows. Expected, if the per-process attribution holds: near 0.5 for two idle contexts, near 1
alone, this process's share of the GPU's time when shared — measured independently by each
process's matmul throughput against its throughput alone — and near 0 for the neighbour's work.

It needs torch with CUDA, nvidia-ml-py and an NVIDIA driver; without them it says what is
missing and exits 2. ``--fake`` runs the analysis on a FakeNVML GPU whose processes follow the
same three phases (no torch, no neighbour process) to check the script on any machine.

Usage::

    python benchmarks/gpu_share.py [--phase-seconds 15] [--device 0]
    python benchmarks/gpu_share.py --fake --phase-seconds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow_green import EnergyTracker
from mlflow_green.measure import hardware
from mlflow_green.measure.meters.nvml import NvmlMeter
from mlflow_green.testing import FakeGPU, FakeNVML, FakeProcess

PHASES = ("both idle", "alone", "shared", "neighbour only")
NEIGHBOUR_PHASES = (2, 3)  # the phases in which the neighbour runs the load

NEIGHBOUR = """
import json, os, sys, time, pathlib, torch
device, phase_s, go, done = int(sys.argv[1]), float(sys.argv[2]), pathlib.Path(sys.argv[3]), sys.argv[4]
cuda = torch.device("cuda", device)
a = torch.randn(8192, 8192, device=cuda, dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device=cuda, dtype=torch.bfloat16)
torch.matmul(a, b); torch.cuda.synchronize(cuda)
pathlib.Path(go.with_suffix(".ready")).write_text(str(os.getpid()))
while not go.exists() or not go.read_text():
    time.sleep(0.01)
origin = float(go.read_text())
batches = {}
for phase in %s:
    start, end = origin + phase * phase_s, origin + (phase + 1) * phase_s
    while time.time() < start:
        time.sleep(0.005)
    n = 0
    while time.time() < end:
        for _ in range(8):
            torch.matmul(a, b)
        torch.cuda.synchronize(cuda)
        n += 1
    batches[phase] = n
pathlib.Path(done).write_text(json.dumps(batches))
""" % (NEIGHBOUR_PHASES,)

def _missing() -> str | None:
    """Why this machine cannot run the real benchmark, or None."""
    try:
        import pynvml  # noqa: F401
    except ImportError:
        return "nvidia-ml-py is not installed"
    problem = hardware.nvml_library_error()
    if problem is not None:
        return f"no NVIDIA driver ({problem})"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else "torch sees no CUDA device"


class Neighbour:
    """The other process: started detached, loads the GPU in ``NEIGHBOUR_PHASES`` once told the origin."""

    def __init__(self, device: int, phase_s: float, workdir: Path) -> None:
        self.go, self.done = workdir / "neighbour.go", workdir / "neighbour.done"
        self.ready = self.go.with_suffix(".ready")
        self.pid = 0
        script = workdir / "neighbour.py"
        script.write_text(NEIGHBOUR)
        args = " ".join(map(str, (sys.executable, script, device, phase_s, self.go, self.done)))
        # sh starts it in the background and exits: the neighbour is reparented, not our child
        subprocess.run(["sh", "-c", f"{args} > {workdir / 'neighbour.log'} 2>&1 &"], check=True)

    def wait_ready(self, timeout_s: float = 60.0) -> int:
        """The neighbour's PID once it holds its CUDA context."""
        self.pid = int(_wait_for(self.ready, timeout_s))
        return self.pid

    def start(self, origin_unix: float) -> None:
        """Tell it when phase 0 begins (unix seconds)."""
        tmp = self.go.with_suffix(".tmp")
        tmp.write_text(repr(origin_unix))
        tmp.rename(self.go)

    def batches(self, timeout_s: float = 20.0) -> dict[int, int]:
        """Matmul batches it completed in each of its phases."""
        return {int(k): v for k, v in json.loads(_wait_for(self.done, timeout_s)).items()}


def _wait_for(path: Path, timeout_s: float) -> str:
    end_s = time.monotonic() + timeout_s
    while time.monotonic() < end_s:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise RuntimeError(f"the neighbour did not write {path.name} in {timeout_s:g} s: see {path.parent}/neighbour.log")


def _real(device: int, phase_s: float, workdir: Path) -> tuple[Any, Any, Callable[[float], int], Callable[[], None],
                                                                  float, Neighbour | None]:
    """pynvml, the handle, a load (returns its batches), a synchronize, the phase origin (unix s), the neighbour."""
    import pynvml
    import torch
    from _nvml_handle import nvml_handle_of

    cuda = torch.device("cuda", device)
    a = torch.randn(8192, 8192, device=cuda, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=cuda, dtype=torch.bfloat16)
    torch.matmul(a, b)
    torch.cuda.synchronize(cuda)
    pynvml.nvmlInit()
    handle = nvml_handle_of(pynvml, cuda)
    neighbour = Neighbour(device, phase_s, workdir)
    neighbour.wait_ready()
    origin_unix = time.time() + 2.0
    neighbour.start(origin_unix)
    print(f"  neighbour ready: pid {neighbour.pid} (ours {os.getpid()})")

    def load(seconds: float) -> int:
        end_s, batches = time.monotonic() + seconds, 0
        while time.monotonic() < end_s:
            for _ in range(8):
                torch.matmul(a, b)
            torch.cuda.synchronize(cuda)
            batches += 1
        return batches

    return pynvml, handle, load, lambda: torch.cuda.synchronize(cuda), origin_unix, neighbour


def _fake(phase_s: float) -> tuple[Any, Any, Callable[[float], int], Callable[[], None], float, Neighbour | None]:
    """The same phases on a FakeNVML GPU: 100 W idle, 700 W busy, shared half and half."""
    ours, theirs = os.getpid(), 999_999
    t0 = 1.0  # FakeNVML's clock starts at nvmlInit; the phases start a second later

    def busy(t_s: float, *, mine: bool) -> float:
        phase = int((t_s - t0) // phase_s)
        if mine:
            return {1: 100.0, 2: 50.0}.get(phase, 0.0)
        return {2: 50.0, 3: 100.0}.get(phase, 0.0)

    gpu = FakeGPU("GPU-fake-share", name="FakeNVML shared", update_period_s=0.1, process_utilisation=True,
                  power_w=lambda t_s: 100.0 + 6.0 * (busy(t_s, mine=True) + busy(t_s, mine=False)),
                  processes=[FakeProcess(ours, sm_util=lambda t_s: busy(t_s, mine=True)),
                             FakeProcess(theirs, sm_util=lambda t_s: busy(t_s, mine=False))])
    nvml = FakeNVML([gpu], unix_epoch_s=time.time())
    nvml.nvmlInit()
    origin_unix = time.time() + t0

    def load(seconds: float) -> int:
        time.sleep(seconds)
        return 0

    return nvml, nvml.nvmlDeviceGetHandleByIndex(0), load, lambda: None, origin_unix, None


def _raw_view(nvml: Any, handle: Any, ours: int, neighbour: int) -> str:
    """What NVML itself says now: the running-process PIDs and the per-process utilisation."""
    parts = []
    try:
        pids = sorted(int(p.pid) for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle))
        tags = {ours: "ours", neighbour: "neighbour"}
        parts.append("compute PIDs " + ", ".join(f"{p}{'=' + tags[p] if p in tags else ''}" for p in pids))
    except Exception as exc:
        parts.append(f"compute PIDs: {type(exc).__name__}: {exc}")
    try:
        stamp_us = int((time.time() - 2.0) * 1e6)
        samples = nvml.nvmlDeviceGetProcessUtilization(handle, stamp_us)
        latest: dict[int, int] = {}
        stamps: dict[int, list[int]] = {}
        for s in samples:
            latest[int(s.pid)] = int(s.smUtil)
            stamps.setdefault(int(s.pid), []).append(int(s.timeStamp))
        parts.append("process SM % " + (", ".join(f"{p}:{u}" for p, u in sorted(latest.items())) or "(none)"))
        parts.append("samples in 2 s (count, median step ms, last stamp mod 1 s in ms) " + ", ".join(
            f"{p}:{len(v)}/{_median_step_ms(v)}/{sorted(v)[-1] // 1000 % 1000}" for p, v in sorted(stamps.items())))
    except Exception as exc:
        parts.append(f"process utilisation: {type(exc).__name__}: {exc}")
    try:
        parts.append(f"device utilisation {nvml.nvmlDeviceGetUtilizationRates(handle).gpu} %")
    except Exception as exc:
        parts.append(f"device utilisation: {type(exc).__name__}")
    return "; ".join(parts)


def _median_step_ms(stamps_us: list[int]) -> str:
    steps = [(b - a) / 1000 for a, b in zip(sorted(stamps_us), sorted(stamps_us)[1:])]
    return f"{statistics.median(steps):.0f}" if steps else "-"


def _gpu(measurement: Any) -> tuple[float, str]:
    """A measurement's GPU energy and the basis (with its share label) of its GPU rows."""
    rows = [d for d in measurement.devices if d.component == "gpu"]
    bases = sorted({f"{d.basis} [{d.scope}]" for d in rows}) or ["NOT BILLED"]
    return sum(d.energy_j for d in rows), " | ".join(bases)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase-seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")
    parser.add_argument("--fake", action="store_true", help="check the script on a FakeNVML GPU")
    args = parser.parse_args()
    phase_s = args.phase_seconds
    if not args.fake:
        missing = _missing()
        if missing is not None:
            print(f"gpu_share: needs an NVIDIA GPU — {missing}. Not run: no figure was produced.", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="gpu-share-") as workdir:
        print(f"gpu_share: {len(PHASES)} phases of {phase_s:g} s")
        setup = _fake(phase_s) if args.fake else _real(args.device, phase_s, Path(workdir))
        nvml, handle, load, synchronize, origin_unix, neighbour = setup
        neighbour_pid = neighbour.pid if neighbour is not None else 999_999
        trackers = {
            scope: EnergyTracker(meters=[NvmlMeter(nvml=nvml, environ={}) if args.fake else NvmlMeter()],
                                 region="FRA", scope=scope, synchronize=synchronize)
            for scope in ("process", "machine")
        }
        # a third, with one window over "alone" and "shared": the neighbour starts mid-window
        trackers["process, one window"] = EnergyTracker(
            meters=[NvmlMeter(nvml=nvml, environ={}) if args.fake else NvmlMeter()], region="FRA", scope="process",
            synchronize=synchronize)
        for tracker in trackers.values():
            tracker.start()
        raw: dict[str, str] = {}
        ours_batches: dict[int, int] = {}
        for index, phase in enumerate(PHASES):
            time.sleep(max(origin_unix + index * phase_s - time.time(), 0.0))
            if phase == "alone":
                trackers["process, one window"].begin("alone+shared")
            if phase == "neighbour only":
                trackers["process, one window"].end("alone+shared")
            with trackers["process"].window(phase), trackers["machine"].window(phase):
                end_unix = origin_unix + (index + 1) * phase_s
                half = threading.Timer(phase_s / 2, lambda p=phase: raw.__setitem__(
                    p, _raw_view(nvml, handle, os.getpid(), neighbour_pid)))
                half.start()
                if phase in ("alone", "shared"):
                    ours_batches[index] = load(max(end_unix - time.time(), 0.0))
                else:
                    time.sleep(max(end_unix - time.time(), 0.0))
                half.join()
        totals = {scope: tracker.stop() for scope, tracker in trackers.items()}
        theirs_batches = neighbour.batches() if neighbour is not None else {}
    windows = {scope: {w.name: w.measurement for w in t.windows} for scope, t in trackers.items()}
    print(f"  {'phase':<15} {'whole GPU':>11} {'process bill':>13} {'ratio':>6}  basis of the bill")
    for phase in PHASES:
        machine_j, _ = _gpu(windows["machine"][phase])
        process_j, basis = _gpu(windows["process"][phase])
        ratio = process_j / machine_j if machine_j else float("nan")
        print(f"  {phase:<15} {machine_j:9.1f} J {process_j:11.1f} J {ratio:6.3f}  {basis}")
        print(f"  {'':<15} NVML at mid-phase: {raw.get(phase, '(not read)')}")
    machine_j, _ = _gpu(totals["machine"])
    process_j, basis = _gpu(totals["process"])
    print(f"  {'whole run':<15} {machine_j:9.1f} J {process_j:11.1f} J "
          f"{process_j / machine_j if machine_j else float('nan'):6.3f}  {basis}")
    span_j, _ = _gpu(windows["process, one window"]["alone+shared"])
    phases_j = sum(_gpu(windows["process"][p])[0] for p in ("alone", "shared"))
    print(f"  one window over alone + shared (the neighbour starts mid-window): {span_j:.1f} J billed, against "
          f"{phases_j:.1f} J in the two phases' windows ({100 * (span_j - phases_j) / phases_j:+.2f} %)")
    if ours_batches and theirs_batches:
        ours_f = ours_batches[2] / ours_batches[1]
        theirs_f = theirs_batches[2] / theirs_batches[3]
        print(f"  independent check, shared phase: matmul throughput against alone: ours {ours_f:.3f}, "
              f"neighbour {theirs_f:.3f} -> our share of the GPU's time {ours_f / (ours_f + theirs_f):.3f}")
    notes = sorted({d.note for d in totals["process"].devices if d.component == "gpu" and d.note})
    for note in notes:
        print(f"  note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
