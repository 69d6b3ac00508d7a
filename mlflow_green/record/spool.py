"""A crash-safe, per-run write-ahead log of everything mlflow-green writes to MLflow.

Every write (metrics, tags, the report) is appended to the run's spool file before it is sent.
A background writer sends them in order and records the last one the server accepted; when
everything is sent the file is deleted. Whatever a process could not send — the server was
down, the process crashed — stays in the file and is replayed in order by the next writer of
the same run or by ``mlflow-green sync``.

Replays never duplicate a point: metrics keep their original timestamp and step, and MLflow's
SQL stores (sqlite, PostgreSQL, MySQL — also behind a tracking server) skip a metric row that
already exists; tags and the report are overwritten with the same value.

Files: ``$MLFLOW_GREEN_SPOOL_DIR`` or ``$XDG_CACHE_HOME/mlflow-green/spool`` (default
``~/.cache/mlflow-green/spool``), one ``<run_id>.jsonl`` per run, whose first line names the
tracking URI and run, and a ``<run_id>.done`` file holding the sequence number last sent.

Example:
    >>> import tempfile
    >>> spool = RunSpool.create(tempfile.mkdtemp(), "sqlite:///mlflow.db", "abc123")
    >>> spool.append({"op": "tags", "tags": {"green.version": "0.1.0"}})
    1
    >>> [op["seq"] for op in spool.pending()]
    [1]
    >>> spool.mark_done(1); spool.pending()
    []
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ENV_SPOOL_DIR = "MLFLOW_GREEN_SPOOL_DIR"


def default_spool_dir() -> Path:
    """Where spool files live (see the module docstring)."""
    configured = os.environ.get(ENV_SPOOL_DIR)
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mlflow-green" / "spool"


class RunSpool:
    """The write-ahead log of one run. Thread-safe; each append is flushed to the OS at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done_path = path.with_suffix(".done")
        self._lock = threading.Lock()
        header, ops = _read(path)
        self.tracking_uri: str = header.get("tracking_uri", "")
        self.run_id: str = header.get("run_id", path.stem)
        self._seq = max((op["seq"] for op in ops), default=0)

    @classmethod
    def create(cls, directory: str | os.PathLike[str], tracking_uri: str, run_id: str) -> RunSpool:
        """Open (or continue) the spool of ``run_id``."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{run_id}.jsonl"
        if not path.exists():
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"spool": 1, "tracking_uri": tracking_uri, "run_id": run_id}) + "\n")
        return cls(path)

    def append(self, op: dict[str, Any]) -> int:
        """Append one write; returns its sequence number."""
        with self._lock:
            self._seq += 1
            line = json.dumps({**op, "seq": self._seq}, allow_nan=False, separators=(",", ":"))
            if not self.path.exists():  # removed after a full send; the run is written to again
                self.path.parent.mkdir(parents=True, exist_ok=True)
                header = {"spool": 1, "tracking_uri": self.tracking_uri, "run_id": self.run_id}
                line = json.dumps(header) + "\n" + line
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
            return self._seq

    def sync_to_disk(self) -> None:
        """fsync the log (the writer thread calls it before sending)."""
        try:
            with self.path.open("rb") as f:
                os.fsync(f.fileno())
        except OSError:
            pass

    def done_seq(self) -> int:
        """The sequence number of the last write the server accepted."""
        try:
            return int(self.done_path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def mark_done(self, seq: int) -> None:
        """Record that every write up to ``seq`` was accepted (atomic replace)."""
        tmp = self.done_path.with_suffix(".done.tmp")
        tmp.write_text(str(seq))
        os.replace(tmp, self.done_path)

    def pending(self) -> list[dict[str, Any]]:
        """The writes not yet accepted, in order."""
        done = self.done_seq()
        return [op for op in _read(self.path)[1] if op["seq"] > done]

    def remove(self) -> None:
        """Delete the spool (everything was sent)."""
        for path in (self.path, self.done_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def spools(directory: str | os.PathLike[str] | None = None) -> Iterator[RunSpool]:
    """Every run spool left in ``directory`` (default: :func:`default_spool_dir`)."""
    folder = Path(directory) if directory is not None else default_spool_dir()
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.jsonl")):
        yield RunSpool(path)


def _read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header: dict[str, Any] = {}
    ops: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return header, ops
    for number, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash mid-write: it was never sent, skip it
        if number == 0 and "spool" in record:
            header = record
        elif isinstance(record, dict) and "seq" in record:
            ops.append(record)
    return header, ops
