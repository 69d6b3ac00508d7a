"""Cold, in-process start→stop of mlflow-green's tracker beside CodeCarbon's offline tracker.

Each measurement runs in a fresh Python process (so it is cold: first plugin load, first
meter probe, first data-file read), after the package is imported (``from mlflow_green import
EnergyTracker``; ``from codecarbon import OfflineEmissionsTracker``); the figure is
construction + start() + stop().
Both trackers are measured in the same run of this script, so the ratio compares like with like.

Usage::

    python benchmarks/start_stop.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

OURS = """
import json, time
i0 = time.perf_counter()
from mlflow_green import EnergyTracker
t0 = time.perf_counter()
tracker = EnergyTracker(region="FR")
tracker.start()
total = tracker.stop()
t1 = time.perf_counter()
print(json.dumps({"seconds": t1 - t0, "import_seconds": t0 - i0, "meters": tracker.meters_tag()}))
"""

CODECARBON = """
import json, logging, time
i0 = time.perf_counter()
from codecarbon import OfflineEmissionsTracker
t0 = time.perf_counter()
tracker = OfflineEmissionsTracker(country_iso_code="FRA", save_to_file=False, log_level="error")
tracker.start()
tracker.stop()
t1 = time.perf_counter()
print(json.dumps({"seconds": t1 - t0, "import_seconds": t0 - i0}))
"""


def _run(code: str, cwd: str) -> tuple[float, float]:
    # Normal bytecode caching, as on a user's machine (some sandboxes set PYTHONDONTWRITEBYTECODE).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), float(result["import_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cwd:  # CodeCarbon may write files: keep them out of the repo
        _run(OURS, cwd), _run(CODECARBON, cwd)  # warm the bytecode cache, not the process
        ours = [_run(OURS, cwd) for _ in range(args.repeats)]
        theirs = [_run(CODECARBON, cwd) for _ in range(args.repeats)]
    ours_ms = statistics.median(o[0] for o in ours) * 1000
    theirs_ms = statistics.median(t[0] for t in theirs) * 1000
    ours_import_ms = statistics.median(o[1] for o in ours) * 1000
    theirs_import_ms = statistics.median(t[1] for t in theirs) * 1000
    print(f"start→stop, cold, in-process, median of {args.repeats} fresh processes")
    print(f"  mlflow-green EnergyTracker          {ours_ms:8.1f} ms   (budget ≤ 50 ms)")
    print(f"  codecarbon OfflineEmissionsTracker  {theirs_ms:8.1f} ms")
    print(f"  ratio codecarbon / mlflow-green     {theirs_ms / ours_ms:8.1f}x")
    print("import, same processes (not part of start→stop)")
    print(f"  from mlflow_green import EnergyTracker          {ours_import_ms:8.1f} ms")
    print(f"  from codecarbon import OfflineEmissionsTracker  {theirs_import_ms:8.1f} ms")
    print("  verdict:", "within budget" if ours_ms <= 50 else "OVER BUDGET")


if __name__ == "__main__":
    main()
