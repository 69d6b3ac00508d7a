"""Run by test_forked_children.py: a ``track()`` block forks a child (``os.fork``) that leaves through the block —
``sys.exit(0)`` or an exception, as a child of a server or a worker pool does — while the parent goes on.

Usage: ``python forking_block.py DIR exit|raise``; prints one JSON line: the run, its status seen by the parent
after the child ended (block still running), the child's exit status and how long it took, the spool files then."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import mlflow
from mlflow import MlflowClient

import mlflow_green
from mlflow_green.testing import FakeMeter


def main() -> None:
    out, how = Path(sys.argv[1]), sys.argv[2]
    mlflow.set_tracking_uri(f"sqlite:///{out / 'm.db'}")
    spool = Path(os.environ["MLFLOW_GREEN_SPOOL_DIR"])
    with mlflow_green.track(meters=[FakeMeter({"cpu:0": 50.0})]) as block:
        block.log_step(0)
        time.sleep(0.3)
        started_s = time.monotonic()
        pid = os.fork()
        if pid == 0:
            if how == "exit":
                sys.exit(0)  # the child's normal exit: unwinds through the parent's block, in the child
            raise RuntimeError("the child's own failure")
        _, child_status = os.waitpid(pid, 0)
        child_s = time.monotonic() - started_s
        time.sleep(0.3)
        seen = MlflowClient().get_run(block.run_id).info.status
        spooled = sorted(p.name for p in spool.glob("*.jsonl"))
        time.sleep(0.3)
    print(json.dumps({"run_id": block.run_id, "seen": seen, "child_exit": os.waitstatus_to_exitcode(child_status),
                      "child_s": child_s, "spooled": spooled}))


if __name__ == "__main__":
    main()
