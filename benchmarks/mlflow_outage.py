"""How long a ``track()`` block waits on a tracking server that is down, with the default bounds.

A 1-second block runs against (a) an address where nothing listens (connection refused: MLflow's
client retries 7 times with backoff, minutes in all) and (b) a black hole (the connection is
accepted, no answer ever comes: MLflow waits 120 s per try). MLflow's own retry settings are left
at their defaults and mlflow-green's bounds are the defaults (start 2 s, end 30 s) unless given.
Printed per fault: the wait on entering the block (binding the run), on leaving it (flushing),
the total, and what the meters measured (the block only: the waits are not billed).

Each fault runs in a fresh process with its own temporary spool folder; nothing is written elsewhere.

Usage::

    python benchmarks/mlflow_outage.py [--start-timeout-s 2] [--end-timeout-s 30]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile

CHILD = """
import json, sys, time
import mlflow, mlflow_green
from mlflow_green.testing import FakeMeter
mlflow.set_tracking_uri(sys.argv[1])
t = mlflow_green.track(meters=[FakeMeter({"cpu:0": 20.0, "ram:0": 5.0})])
entering = time.monotonic()
with t:
    entered = time.monotonic()
    time.sleep(1.0)
    leaving = time.monotonic()
left = time.monotonic()
print(json.dumps({"enter_s": entered - entering, "exit_s": left - leaving, "total_s": left - entering,
                  "measured_s": t.measurement.duration_s, "run_id": t.run_id}))
"""


def _measure(uri: str, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, uri], capture_output=True, text=True, env=env, timeout=600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"the child failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start-timeout-s", type=float, default=None)
    parser.add_argument("--end-timeout-s", type=float, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "MLFLOW_GREEN_SPOOL_DIR": os.path.join(scratch, "spool"),
               "MLFLOW_GREEN_SPOOL_FALLBACK_DIR": os.path.join(scratch, "fallback"),
               "MLFLOW_GREEN_CACHE_DIR": os.path.join(scratch, "cache")}
        for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_GREEN_START_TIMEOUT_S",
                     "MLFLOW_GREEN_END_TIMEOUT_S", "MLFLOW_GREEN_FLUSH_TIMEOUT_S"):
            env.pop(name, None)
        if args.start_timeout_s is not None:
            env["MLFLOW_GREEN_START_TIMEOUT_S"] = str(args.start_timeout_s)
        if args.end_timeout_s is not None:
            env["MLFLOW_GREEN_END_TIMEOUT_S"] = str(args.end_timeout_s)
        refused = socket.socket()
        refused.bind(("127.0.0.1", 0))
        refused_uri = f"http://127.0.0.1:{refused.getsockname()[1]}"
        refused.close()  # nothing listens there now
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)  # connections are accepted by the kernel; nobody ever answers
        rows = [("connection refused", _measure(refused_uri, env)),
                ("black hole (no answer)", _measure(f"http://127.0.0.1:{hole.getsockname()[1]}", env))]
        hole.close()
    print("| fault | wait entering (s) | wait leaving (s) | total for a 1 s block (s) | measured by the meters (s) |")
    print("| --- | --- | --- | --- | --- |")
    for name, row in rows:
        print(f"| {name} | {row['enter_s']:.2f} | {row['exit_s']:.2f} | {row['total_s']:.2f} | {row['measured_s']:.2f} |")


if __name__ == "__main__":
    main()
