"""Cold start of mlflow-green's tracker beside CodeCarbon's offline tracker, in fresh processes.

Each measurement is a fresh Python process. Inside it, from before the import to after
``stop()``: ``import mlflow_green`` + ``EnergyTracker()`` + ``start()`` + ``stop()`` (wall and CPU
time), and separately the first ``start()`` → ``stop()`` after the import. CodeCarbon does the
same with ``OfflineEmissionsTracker``. The whole process (interpreter start-up included) is timed
from outside too. Both are measured in the same run of this script, so the ratios compare like
with like.

mlflow-green keeps what it resolves once per machine in its cache folder (CodeCarbon's power
model, the entry-point list): **cold** runs each get an empty cache folder (the first process on
a new machine, or after a CodeCarbon upgrade), **warm** runs share one (every later process).
The cache folder is a temporary one (``MLFLOW_GREEN_CACHE_DIR``); nothing is written elsewhere.

Wall and CPU time are both printed: on a busy machine the wall time of a short, import-heavy
process includes waiting for a CPU and for the disk, while its CPU time is what an idle machine's
wall time would be.

Usage::

    python benchmarks/start_stop.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OURS = """
import json, time
w0, c0 = time.perf_counter(), time.process_time()
import mlflow_green
tracker = mlflow_green.EnergyTracker()
w1, c1 = time.perf_counter(), time.process_time()
tracker.start()
tracker.stop()
w2, c2 = time.perf_counter(), time.process_time()
again = mlflow_green.EnergyTracker(); a0 = time.perf_counter(); again.start(); again.stop(); a1 = time.perf_counter()
print(json.dumps({"total_s": w2 - w0, "cpu_s": c2 - c0, "start_stop_s": w2 - w1, "start_stop_cpu_s": c2 - c1,
                  "again_s": a1 - a0, "meters": tracker.meters_tag()}))
"""

CODECARBON = """
import json, logging, time
w0, c0 = time.perf_counter(), time.process_time()
from codecarbon import OfflineEmissionsTracker
tracker = OfflineEmissionsTracker(country_iso_code="FRA", save_to_file=False, log_level="error")
w1, c1 = time.perf_counter(), time.process_time()
tracker.start()
tracker.stop()
w2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({"total_s": w2 - w0, "cpu_s": c2 - c0, "start_stop_s": w2 - w1, "start_stop_cpu_s": c2 - c1,
                  "again_s": float("nan")}))
"""


def _run(code: str, cwd: str, cache: str) -> dict[str, float]:
    # Normal bytecode caching, as on a user's machine (some sandboxes set PYTHONDONTWRITEBYTECODE).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["MLFLOW_GREEN_CACHE_DIR"] = cache
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - t0
    return result


def _median_ms(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:  # CodeCarbon may write files: keep them out of the repo
        warm_cache = str(Path(tmp) / "warm-cache")
        _run(OURS, tmp, str(Path(tmp) / "bytecode-warmup")), _run(CODECARBON, tmp, warm_cache)  # compile .pyc
        cold = [_run(OURS, tmp, str(Path(tmp) / f"cold-{i}")) for i in range(args.repeats)]
        _run(OURS, tmp, warm_cache)  # fills the warm cache
        warm = [_run(OURS, tmp, warm_cache) for _ in range(args.repeats)]
        theirs = [_run(CODECARBON, tmp, warm_cache) for _ in range(args.repeats)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Fresh processes, median of {args.repeats} each ({os.cpu_count()} CPUs, load average {load:.1f}).")
    print(f"meters: {warm[-1]['meters']}")
    print("import + construct + start + stop, in-process   wall ms    CPU ms   whole process ms")
    rows = [("mlflow-green, cache warm", warm), ("mlflow-green, cache cold", cold), ("codecarbon offline", theirs)]
    for name, runs in rows:
        print(
            f"  {name:<44} {_median_ms(runs, 'total_s'):8.1f}  {_median_ms(runs, 'cpu_s'):8.1f}"
            f"   {_median_ms(runs, 'process_s'):8.1f}"
        )
    ratio_warm = _median_ms(theirs, "total_s") / _median_ms(warm, "total_s")
    ratio_cold = _median_ms(theirs, "total_s") / _median_ms(cold, "total_s")
    ratio_process = _median_ms(theirs, "process_s") / _median_ms(warm, "process_s")
    print(f"  ratio codecarbon / mlflow-green: warm {ratio_warm:.1f}x, cold {ratio_cold:.1f}x "
          f"(whole processes, warm: {ratio_process:.1f}x)")
    print("first start→stop after the import          wall ms    CPU ms")
    print(f"  mlflow-green, cache warm               {_median_ms(warm, 'start_stop_s'):8.2f}  "
          f"{_median_ms(warm, 'start_stop_cpu_s'):8.2f}   (a second tracker in the same process: "
          f"{_median_ms(warm, 'again_s'):.2f} ms wall)")
    print(f"  mlflow-green, cache cold               {_median_ms(cold, 'start_stop_s'):8.2f}  "
          f"{_median_ms(cold, 'start_stop_cpu_s'):8.2f}   (resolves CodeCarbon's model once)")
    print(f"  codecarbon offline                     {_median_ms(theirs, 'start_stop_s'):8.2f}  "
          f"{_median_ms(theirs, 'start_stop_cpu_s'):8.2f}")
    cpu_ratio = _median_ms(theirs, "total_s") / _median_ms(warm, "cpu_s")
    for clock, total_key, start_key, ratio in (
        ("wall", "total_s", "start_stop_s", ratio_warm),
        ("CPU", "cpu_s", "start_stop_cpu_s", cpu_ratio),
    ):
        total_ok = _median_ms(warm, total_key) <= 50 and ratio >= 30
        start_ok = _median_ms(warm, start_key) <= 5
        print(
            f"verdict by {clock} time (cache warm): import+start+stop ≤ 50 ms and ≥ 30x ({ratio:.1f}x): "
            + ("within budget" if total_ok else "OVER BUDGET")
            + "; start→stop ≤ 5 ms: "
            + ("within budget" if start_ok else "OVER BUDGET")
        )
    print("  (the CPU verdict's ratio is CodeCarbon's wall time over mlflow-green's CPU time: what an idle machine"
          " would show, CodeCarbon's start being mostly waiting)")
    if load > (os.cpu_count() or 1):
        print(f"  note: load average {load:.1f} on {os.cpu_count()} CPUs — wall times include waiting for a CPU;"
              " CPU time approximates an idle machine's wall time")


if __name__ == "__main__":
    main()
