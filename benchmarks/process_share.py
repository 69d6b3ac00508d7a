"""A nearly idle training beside a one-core CPU hog: billed as if alone? mlflow-green beside CodeCarbon.

One run of this script measures, in fresh processes, the same nearly idle workload (a few
milliseconds of CPU every 100 ms) twice: alone, and while another process keeps one core busy
(a busy loop that is not part of the tracked process tree). Each time it is measured by:

* mlflow-green, ``scope="process"`` (the default): CPU billed by the tree's CPU time, RAM by its
  resident memory;
* mlflow-green, ``scope="machine"``: whole devices (what every run was billed before scopes);
* CodeCarbon's ``OfflineEmissionsTracker(tracking_mode="process")``.

The tracked process runs one tracker only, so no tracker bills another's work. Budget
(issue 10): beside the hog, the process-scope bill is within 1.5× of the bill alone.

Usage::

    python benchmarks/process_share.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

WORKLOAD = """
import json, sys, time

def nearly_idle(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.process_time()
        while time.process_time() - t < 0.003:  # 3 ms of CPU...
            pass
        time.sleep(0.097)  # ...every 100 ms: about 3 % of one core

tool, seconds = sys.argv[1], float(sys.argv[2])
if tool == "codecarbon":
    import logging
    from codecarbon import OfflineEmissionsTracker
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    tracker = OfflineEmissionsTracker(country_iso_code="FRA", tracking_mode="process", measure_power_secs=1,
                                      save_to_file=False, log_level="error", allow_multiple_runs=True)
    tracker.start()
    nearly_idle(seconds)
    tracker.stop()
    data = tracker.final_emissions_data
    cpu_j, ram_j = data.cpu_energy * 3.6e6, data.ram_energy * 3.6e6
else:
    import mlflow_green
    tracker = mlflow_green.EnergyTracker(scope=tool)
    tracker.start()
    nearly_idle(seconds)
    total = tracker.stop()
    cpu_j, ram_j = total.component_energy_j("cpu"), total.component_energy_j("ram")
print(json.dumps({"cpu_j": cpu_j, "ram_j": ram_j, "cpu_s": time.process_time()}))
"""

HOG = "while True: pass"
TOOLS = (("process", "mlflow-green scope=process"), ("machine", "mlflow-green scope=machine"),
         ("codecarbon", "codecarbon tracking_mode=process"))


def _measure(tool: str, seconds: float, cwd: str, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", WORKLOAD, tool, str(seconds)], capture_output=True, text=True, cwd=cwd, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    results: dict[tuple[str, str], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["MLFLOW_GREEN_CACHE_DIR"] = os.path.join(tmp, "cache")
        _measure("process", 0.2, tmp, env)  # resolves CodeCarbon's model into the cache, compiles .pyc
        for tool, _ in TOOLS:
            results[(tool, "alone")] = _measure(tool, args.seconds, tmp, env)
        hog = subprocess.Popen([sys.executable, "-c", HOG])
        try:
            time.sleep(0.5)
            for tool, _ in TOOLS:
                results[(tool, "beside")] = _measure(tool, args.seconds, tmp, env)
        finally:
            hog.kill()
            hog.wait()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Nearly idle process (~3 % of a core) for {args.seconds:g} s, alone and beside a one-core CPU hog")
    print(f"in another process ({os.cpu_count()} CPUs, load average {load:.1f} at the end); energy in joules.")
    print(f"  {'':<34}{'CPU alone':>10}{'CPU beside':>11}{'ratio':>7}{'RAM alone':>11}{'RAM beside':>11}")
    ratios = {}
    for tool, label in TOOLS:
        alone, beside = results[(tool, "alone")], results[(tool, "beside")]
        ratio = beside["cpu_j"] / alone["cpu_j"] if alone["cpu_j"] > 0 else float("inf")
        ratios[tool] = ratio
        print(
            f"  {label:<34}{alone['cpu_j']:10.2f}{beside['cpu_j']:11.2f}{ratio:6.2f}x"
            f"{alone['ram_j']:11.2f}{beside['ram_j']:11.2f}"
        )
    cpu_s = {k: round(v["cpu_s"], 2) for k, v in results.items() if k[0] == "process"}
    print(f"  (the tracked process's own CPU seconds, scope=process runs: alone {cpu_s[('process', 'alone')]}, "
          f"beside {cpu_s[('process', 'beside')]})")
    ok = 1 / 1.5 <= ratios["process"] <= 1.5
    print("verdict: scope=process beside the hog is within 1.5x of alone: " + ("yes" if ok else "NO"))


if __name__ == "__main__":
    main()
