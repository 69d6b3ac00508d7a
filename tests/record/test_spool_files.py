"""Spool files: what they record, and a lock that a forked child (a data-loader worker) never keeps."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from mlflow_green.errors import SpoolBusyError
from mlflow_green.record.spool import SpoolFile, canonical_uri, spool_paths


def test_a_spool_file_names_its_absolute_tracking_uri_run_and_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spool = SpoolFile.create(tmp_path / "spool", {"tracking_uri": "sqlite:///mlflow.db", "token": "t0k", "owned": True})
    header = json.loads(spool.path.read_text().splitlines()[0])
    assert header["tracking_uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}", "a relative path is made absolute"
    assert header["token"] == "t0k" and header["owned"] is True and header.get("run_id") is None
    assert set(header["writer"]) == {"host", "boot_id", "pid", "started_s"}
    assert spool.writer is not None and spool.writer.state() == "alive"
    with pytest.raises(SpoolBusyError):
        SpoolFile.acquire(spool.path)
    spool.release()
    assert canonical_uri("https://mlflow.example.com/") == "https://mlflow.example.com"


def _child(started: object, seconds: float) -> None:
    started.set()  # type: ignore[attr-defined]
    time.sleep(seconds)


def test_a_forked_child_does_not_keep_its_parents_lock(tmp_path: Path) -> None:
    spool = SpoolFile.create(tmp_path, {"tracking_uri": "http://x", "run_id": "r"})
    context = multiprocessing.get_context("fork")
    started = context.Event()
    child = context.Process(target=_child, args=(started, 5.0))
    child.start()
    try:
        assert started.wait(10)
        spool.release()  # the writer is gone; its data-loader worker still runs
        SpoolFile.acquire(spool.path).release()
    finally:
        child.kill()
        child.join()
    assert [p.name for p in spool_paths(tmp_path)] == [spool.path.name]
