"""Cold, in-process start→stop of mlflow-green's tracker beside CodeCarbon's offline tracker.

Each measurement runs in a fresh Python process (so it is cold: first plugin load, first
meter probe), after the package is imported; the figure is construction + start() + stop().
Both trackers are measured in the same run of this script, so the ratio compares like with like.

Usage::

    python benchmarks/start_stop.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

OURS = """
import json, time
import mlflow_green
t0 = time.perf_counter()
tracker = mlflow_green.EnergyTracker(region="FR")
tracker.start()
total = tracker.stop()
t1 = time.perf_counter()
print(json.dumps({"seconds": t1 - t0, "meters": tracker.meters_tag()}))
"""

CODECARBON = """
import json, logging, time
from codecarbon import OfflineEmissionsTracker
t0 = time.perf_counter()
tracker = OfflineEmissionsTracker(country_iso_code="FRA", save_to_file=False, log_level="error")
tracker.start()
tracker.stop()
t1 = time.perf_counter()
print(json.dumps({"seconds": t1 - t0}))
"""


def _run(code: str, cwd: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cwd:  # CodeCarbon may write files: keep them out of the repo
        ours = [_run(OURS, cwd) for _ in range(args.repeats)]
        theirs = [_run(CODECARBON, cwd) for _ in range(args.repeats)]
    ours_ms = statistics.median(ours) * 1000
    theirs_ms = statistics.median(theirs) * 1000
    print(f"start→stop, cold, in-process, median of {args.repeats} fresh processes")
    print(f"  mlflow-green EnergyTracker        {ours_ms:8.1f} ms   (budget ≤ 50 ms)")
    print(f"  codecarbon OfflineEmissionsTracker {theirs_ms:8.1f} ms")
    print(f"  ratio codecarbon / mlflow-green   {theirs_ms / ours_ms:8.1f}x")
    print("  verdict:", "within budget" if ours_ms <= 50 else "OVER BUDGET")


if __name__ == "__main__":
    main()
