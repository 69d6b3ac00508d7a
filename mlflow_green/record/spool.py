"""Spool files: a crash-safe, locked write-ahead log of what one process writes to one MLflow run.

Each writer (one training process, one run) appends every write to its own file before it is
sent, and records in a small state file the last one the server took. The file is deleted once
everything was sent. Whatever is left — the server was down, the process was killed — is
replayed by ``mlflow-green sync`` (or by a later training of the same tracking server).

Layout of the spool folder (``$MLFLOW_GREEN_SPOOL_DIR``, else ``$XDG_CACHE_HOME/mlflow-green/spool``,
else ``~/.cache/mlflow-green/spool``, else with no home folder ``<tmp>/mlflow-green-<uid>/spool``;
when it cannot be written, :func:`fallback_spool_dir`)::

    <run id or new-<token>>.<writer>.jsonl   header line, then one entry per line (see record.ops)
    <same stem>.state                         {"done_seq": 12, "run_id": "..."}: progress
    rejected/<same name>                      entries the server refused, or malformed, with the reason
    malformed/<name> + <name>.reason          whole files that could not be read, moved aside

The header names the tracking URI (absolute: a relative sqlite path is resolved when written),
the run (or the token of the run still to create), whether mlflow-green started the run, and the
writer (host, boot id, pid, start time: see :mod:`mlflow_green.record.liveness`). A live writer
holds an exclusive ``flock`` on its file; a replay takes the same lock, so two syncs, or a sync
and a live writer, never send the same entries. The format (paths, header, entries, state) is
:mod:`~mlflow_green.record.spool_format`; locking and moving files aside, :mod:`~mlflow_green.record.spool_io`.

Example:
    >>> import tempfile
    >>> spool = SpoolFile.create(tempfile.mkdtemp(), {"tracking_uri": "sqlite:////tmp/m.db", "run_id": "abc"})
    >>> spool.append({"seq": 1, "t_ms": 0, "op": "tags", "tags": {"green.version": "0.1"}})
    >>> [entry["seq"] for entry in spool.read().entries]
    [1]
    >>> spool.mark_done(1); spool.done_seq
    1
    >>> spool.remove()
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow_green.errors import SpoolFormatError
from mlflow_green.record.liveness import WriterIdentity
from mlflow_green.record.spool_format import (
    ENV_SPOOL_DIR,
    ENV_SPOOL_FALLBACK_DIR,
    FORMAT,
    MALFORMED_DIR,
    REJECTED_DIR,
    ReadResult,
    canonical_uri,
    default_spool_dir,
    encode_entry,
    fallback_spool_dir,
    parse_entries,
    read_header,
    read_state,
    spool_paths,
    to_send,
)
from mlflow_green.record.spool_io import hold_until_fork, lock_file, move_aside, write_all

# os.access checks with the ids that open() uses where the platform can (not with the real ids).
_EFFECTIVE_IDS = os.access in os.supports_effective_ids

class SpoolFile:
    """One writer's spool file, locked while this object holds it. Not thread-safe: one writer thread.

    Use :meth:`create` (a new file for a live writer) or :meth:`acquire` (an existing file, to replay).
    """

    def __init__(self, path: Path, header: Mapping[str, Any], lock_fd: int | None) -> None:
        self.path = path
        self.header = dict(header)
        self._lock_fd = lock_fd
        self._fd: int | None = None  # kept open for appending (see append)
        self._inode = 0
        self._size = 0
        self._unsynced = True
        self._done_seq, state_run_id, aside = read_state(self.state_path, path)
        self.run_id: str | None = state_run_id or header.get("run_id") or None
        self.aside_lines: set[int] = aside
        hold_until_fork(self)

    # -- identity ------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.path.with_name(self.path.name[: -len(".jsonl")] + ".state")

    @property
    def tracking_uri(self) -> str:
        return str(self.header.get("tracking_uri") or "")

    @property
    def token(self) -> str | None:
        return self.header.get("token") or None

    @property
    def owned(self) -> bool:
        """True if mlflow-green started the run (and must end it)."""
        return bool(self.header.get("owned"))

    @property
    def writer(self) -> WriterIdentity | None:
        return WriterIdentity.from_dict(self.header.get("writer"))

    @property
    def done_seq(self) -> int:
        """The sequence number of the last entry the server took (or that was set aside)."""
        return self._done_seq

    def label(self) -> str:
        """The run as users know it: its id, or the run still to be created."""
        return f"run {self.run_id}" if self.run_id else f"new run (token {self.token})"

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: str | os.PathLike[str], header: Mapping[str, Any]) -> SpoolFile:
        """A new, locked spool file in ``directory`` (created if needed); ``OSError`` if it cannot be."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        full = {"spool": FORMAT, "created_ms": int(time.time() * 1000), "writer": WriterIdentity.current().to_dict(), **header}
        full["tracking_uri"] = canonical_uri(str(full.get("tracking_uri") or ""))
        key = full.get("run_id") or f"new-{str(full.get('token') or '')[:12]}"
        path = folder / f"{key}.{secrets.token_hex(4)}.jsonl"
        tmp = path.with_name(f".{path.name}.tmp")  # locked before it gets its name: a sync never sees it half made
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        lock_fd = None
        try:
            write_all(fd, (json.dumps(full, separators=(",", ":")) + "\n").encode())
            lock_fd = lock_file(tmp, block=False)
            os.replace(tmp, path)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        finally:
            os.close(fd)
        return cls(path, full, lock_fd)

    @classmethod
    def acquire(cls, path: Path) -> SpoolFile:
        """Lock an existing spool file to replay it.

        Raises:
            SpoolBusyError: A live writer (or another sync) holds it.
            SpoolFormatError: It is not a spool file (not a regular file, unreadable header).
            FileNotFoundError: It was removed meanwhile (its writer finished).
        """
        if not path.is_file():
            if path.exists():
                raise SpoolFormatError(f"{path.name} is not a regular file")
            raise FileNotFoundError(path)
        lock_fd = lock_file(path, block=False)
        try:
            if os.fstat(lock_fd).st_ino != os.stat(path).st_ino:  # replaced between open and lock
                raise FileNotFoundError(path)
            header = read_header(path)
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, header, lock_fd)

    def release(self) -> None:
        """Close and unlock (without removing)."""
        self._close_append_fd()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    # -- writing -------------------------------------------------------------------------------
    def append(self, entry: Mapping[str, Any]) -> None:
        """Append one entry (``OSError`` if it cannot be kept; a partial line is rolled back).

        The file stays open between appends; each append checks that the path still names it (a
        removed or replaced file is an error, so that the writer makes a new one) and that it can
        still be written through its path: a folder remounted read-only or made read-only keeps the
        open descriptor writable, yet sync could no longer finish the file, so it is the error a
        fresh open gives (``EROFS``, ``EACCES``) and the writer moves to its fallback folder.
        """
        line = encode_entry(entry)
        fd = self._append_fd()
        if os.stat(self.path).st_ino != self._inode:  # FileNotFoundError if removed
            raise FileNotFoundError(f"{self.path} was replaced")
        if not os.access(self.path, os.W_OK, effective_ids=_EFFECTIVE_IDS):
            self._close_append_fd()
            fd = self._append_fd()  # raises the reason (read-only file system, permission denied)
        size = self._size
        try:
            write_all(fd, line)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
        self._size = size + len(line)
        self._unsynced = True

    def _append_fd(self) -> int:
        """The file, open for appending (opened on the first append; no O_CREAT: a vanished file is an error)."""
        if self._fd is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            stat = os.fstat(fd)
            if self._lock_fd is not None and stat.st_ino != os.fstat(self._lock_fd).st_ino:
                os.close(fd)
                raise FileNotFoundError(f"{self.path} was replaced")
            self._fd, self._inode, self._size = fd, stat.st_ino, stat.st_size
        return self._fd

    def _close_append_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def sync_to_disk(self) -> None:
        """fsync what was appended since the last call (the writer does it before sending); never raises."""
        if self._lock_fd is not None and self._unsynced:
            with contextlib.suppress(OSError):
                os.fsync(self._lock_fd)
                self._unsynced = False

    def mark_done(self, seq: int, run_id: str | None = None) -> None:
        """Record that every entry up to ``seq`` was handled (atomic); ``OSError`` if it cannot be."""
        self._done_seq = max(self._done_seq, int(seq))
        if run_id:
            self.run_id = run_id
        self._save_state()

    def mark_aside(self, line: int) -> None:
        """Record that malformed line number ``line`` was set aside (so that it is not set aside twice)."""
        self.aside_lines.add(int(line))
        self._save_state()

    def _save_state(self) -> None:
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        state = {"done_seq": self._done_seq, "run_id": self.run_id, "aside_lines": sorted(self.aside_lines)}
        try:
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.state_path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def reject(self, entry: Mapping[str, Any] | str, reason: str) -> Path:
        """Keep ``entry`` (or a raw line) aside with ``reason``; returns the rejected file."""
        folder = self.path.parent / REJECTED_DIR
        folder.mkdir(exist_ok=True)
        target = folder / self.path.name
        record = {"reason": reason, "at_ms": int(time.time() * 1000), "tracking_uri": self.tracking_uri,
                  "run_id": self.run_id, "token": self.token}
        record["entry" if isinstance(entry, Mapping) else "raw"] = entry
        with target.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
        return target

    def remove(self) -> None:
        """Delete the file and its state (everything was sent), then unlock. ``OSError`` if it cannot be."""
        try:
            for path in (self.state_path, self.path.with_suffix(".done"), self.path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        finally:
            self.release()

    # -- reading -------------------------------------------------------------------------------
    def read(self) -> ReadResult:
        """Every entry, checked: malformed lines and out-of-order ``seq`` are listed apart."""
        return parse_entries(self.path.read_bytes())


__all__ = [
    "ENV_SPOOL_DIR",
    "ENV_SPOOL_FALLBACK_DIR",
    "FORMAT",
    "MALFORMED_DIR",
    "REJECTED_DIR",
    "ReadResult",
    "SpoolFile",
    "canonical_uri",
    "default_spool_dir",
    "fallback_spool_dir",
    "move_aside",
    "read_header",
    "spool_paths",
    "to_send",
]

