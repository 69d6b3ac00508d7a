"""Spool files: what they record, and a lock that a forked child (a data-loader worker) never keeps."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

from mlflow_green.errors import SpoolBusyError
from mlflow_green.record.spool import SpoolFile, canonical_uri, spool_paths


def test_a_spool_file_names_its_absolute_tracking_uri_run_and_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spool = SpoolFile.create(tmp_path / "spool", {"tracking_uri": "sqlite:///mlflow.db", "token": "t0k", "owned": True})
    header = json.loads(spool.path.read_text().splitlines()[0])
    assert header["tracking_uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}", "a relative path is made absolute"
    assert header["token"] == "t0k" and header["owned"] is True and header.get("run_id") is None
    assert set(header["writer"]) == {"host", "boot_id", "pid", "started_s", "start_ticks"}
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


def test_the_open_spool_file_notices_when_it_is_removed_or_replaced_and_rolls_back_nothing_else(tmp_path: Path) -> None:
    """The file stays open between appends; an append after the path changed is an error, not a lost write."""
    spool = SpoolFile.create(tmp_path, {"tracking_uri": "sqlite:////tmp/m.db", "run_id": "abc"})
    for seq in (1, 2):
        spool.append({"seq": seq, "t_ms": 0, "op": "tags", "tags": {"k": str(seq)}})
    assert [e["seq"] for e in spool.read().entries] == [1, 2]
    other = tmp_path / "other.jsonl"
    other.write_text(spool.path.read_text())
    other.replace(spool.path)  # someone put another file there
    with pytest.raises(FileNotFoundError):
        spool.append({"seq": 3, "t_ms": 0, "op": "tags", "tags": {}})
    spool.path.unlink()
    with pytest.raises(FileNotFoundError):
        spool.append({"seq": 3, "t_ms": 0, "op": "tags", "tags": {}})
    spool.release()
    fresh = SpoolFile.create(tmp_path, {"tracking_uri": "sqlite:////tmp/m.db", "run_id": "abc"})
    fresh.append({"seq": 1, "t_ms": 0, "op": "tags", "tags": {}})
    fresh.release()
    fresh.append({"seq": 2, "t_ms": 0, "op": "tags", "tags": {}})  # reopened after a release
    assert [e["seq"] for e in fresh.read().entries] == [1, 2]
    fresh.remove()


@pytest.mark.parametrize("entry", [
    {"seq": 1, "t_ms": 5, "op": "metrics", "metrics": [["green/energy_kwh", 1.3016317446595159e-06, 5, 0],
                                                       ["green/power_w", 2.5e300, 5, 0], ["green/duration_s", 0.1 + 0.2, 5, 0]]},
    {"seq": 2, "t_ms": 5, "op": "tags", "tags": {"green.hardware.cpu": "Intel® Xeon®\tline\nbreak \"quoted\" \\ é 漢"}},
    {"seq": 3, "t_ms": 5, "op": "report", "report": {"flops_per_sample": None, "nested": [1, [2.0, {"a": True}]]}},
    {"seq": 4, "t_ms": 5, "op": "tags", "tags": {"green.note": "a lone surrogate \ud800 in a name"}},
    {"seq": 5, "t_ms": 2**70, "op": "report", "report": {"null": "the word null in a value is no None"}},
    {"seq": 6, "t_ms": 5, "op": "report", "report": {"val_accuracy": np.float64(0.91)}},  # a framework's number
])
def test_a_spool_line_reads_back_as_the_entry_whichever_encoder_wrote_it(tmp_path: Path, entry: dict) -> None:
    spool = SpoolFile.create(tmp_path, {"tracking_uri": "sqlite:////tmp/m.db", "run_id": "abc"})
    spool.append(entry)
    [line] = spool.path.read_bytes().splitlines()[1:]
    assert json.loads(line) == json.loads(json.dumps(entry)) and b"\n" not in line
    assert spool.read().entries == [json.loads(json.dumps(entry))]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_value_json_has_no_number_for_is_refused_and_nothing_is_written(tmp_path: Path, value: float) -> None:
    spool = SpoolFile.create(tmp_path, {"tracking_uri": "sqlite:////tmp/m.db", "run_id": "abc"})
    size = spool.path.stat().st_size
    with pytest.raises(ValueError, match="JSON compliant"):
        spool.append({"seq": 1, "t_ms": 5, "op": "metrics", "metrics": [["green/energy_kwh", value, 5, 0]]})
    assert spool.path.stat().st_size == size
