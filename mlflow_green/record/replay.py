"""Replay one spool file left by an earlier process: create its run, send its entries, end it if orphaned.

Used by ``mlflow-green sync`` and, in the background, by a later training against the same
tracking server. Each file is handled on its own: a malformed file is moved aside, a malformed or
refused entry is kept in ``rejected/`` with the reason and the entries after it go on, and a
transient failure (server unreachable, 5xx, 429) is retried with backoff, then left for next time.

A run that mlflow-green started and whose writer is provably dead (same host and boot, and its
pid is gone or now belongs to another process) is ended ``KILLED`` at the time of its last
spooled entry, unless it already ended.

Example::

    result = replay_file(path, client_for=MlflowClient)
    print(result.summary())
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_green.errors import SpoolBusyError, SpoolFormatError
from mlflow_green.record.failures import describe, is_transient
from mlflow_green.record.ops import send
from mlflow_green.record.spool import SpoolFile, move_aside, to_send

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass
class FileResult:
    """What replaying one spool file did.

    Attributes:
        path: The spool file.
        outcome: ``done`` (nothing left), ``pending`` (some entries wait for the server), ``busy``
            (a live writer or another sync holds it), ``malformed`` (moved aside), ``gone``, ``kept``
            (everything was sent but the file stays: see ``notes``), ``error`` (the file could not be read).
        label: The run (``run <id>`` or ``new run (token ...)``).
        tracking_uri: Where its entries go.
        sent: Entries the server took now. created: the run was created now; found: it had been
            created by an earlier try whose answer was lost (found by its token).
        rejected: Entries set aside now (refused by the server, or malformed), with ``rejected_file``.
        pending: Entries still waiting. error: why (the last transient failure), or what went wrong.
        ended: ``KILLED`` if the run was ended now because its writer is gone.
        notes: Other things the user should know (a file that could not be removed...).
    """

    path: Path
    outcome: str
    label: str = ""
    tracking_uri: str = ""
    sent: int = 0
    created: bool = False
    found: bool = False
    rejected: int = 0
    rejected_file: Path | None = None
    reasons: tuple[str, ...] = ()
    pending: int = 0
    error: str | None = None
    ended: str | None = None
    moved_to: Path | None = None
    notes: tuple[str, ...] = ()


def replay_file(
    path: Path,
    *,
    client_for: Callable[[str], MlflowClient],
    retries: int = 3,
    backoff_s: float = 0.5,
    unreachable: dict[str, str] | None = None,
) -> FileResult:
    """Replay ``path`` (see the module docstring); never raises for a problem of the file itself.

    Args:
        client_for: Makes the client of a tracking URI.
        retries: Tries after the first, for a transient failure, with ``backoff_s`` doubling.
        unreachable: Tracking URIs found unreachable in this sync (shared across files: a file
            of such a URI is not tried again); updated.
    """
    unreachable = {} if unreachable is None else unreachable
    try:
        spool = SpoolFile.acquire(path)
    except SpoolBusyError:
        return FileResult(path, "busy", error="a live process is writing it (or another sync has it)")
    except SpoolFormatError as exc:
        try:
            return FileResult(path, "malformed", error=str(exc), moved_to=move_aside(path, str(exc)))
        except OSError as move_error:
            return FileResult(path, "malformed", error=str(exc), notes=(f"it could not be moved aside ({describe(move_error)})",))
    except FileNotFoundError:
        return FileResult(path, "gone")
    try:
        return _Replay(spool, client_for, retries, backoff_s, unreachable).run()
    except OSError as exc:  # the file cannot be read (or the disk failed): this file only
        return FileResult(path, "error", label=spool.label(), tracking_uri=spool.tracking_uri, error=describe(exc))
    finally:
        spool.release()


def store_problem(uri: str, *, connect: bool = True) -> str | None:
    """Why MLflow cannot use tracking URI ``uri`` at all (None if it can, or cannot tell without the server).

    Never creates anything: a sqlite database that does not exist is a problem, not a new database.
    """
    from urllib.parse import urlparse

    if uri.startswith(("http://", "https://")):
        return None if urlparse(uri).hostname else f"{uri!r} has no host name"
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :].split("?")[0]
        if path != ":memory:" and not Path(path).is_file():
            return f"there is no MLflow database at {path} ({uri!r})"
    if not connect:
        return None
    try:
        from mlflow import MlflowClient

        MlflowClient(uri)
    except Exception as exc:
        if is_transient(exc):
            return None
        return f"MLflow cannot use {uri!r}: {' '.join(str(exc).split())[:300]}"
    return None


class _Replay:
    def __init__(self, spool: SpoolFile, client_for: Callable[[str], MlflowClient], retries: int,
                 backoff_s: float, unreachable: dict[str, str]) -> None:
        self.spool = spool
        self.client_for = client_for
        self.retries = retries
        self.backoff_s = backoff_s
        self.unreachable = unreachable
        self.result = FileResult(spool.path, "done", label=spool.label(), tracking_uri=spool.tracking_uri)
        self.notes: list[str] = []
        self.reasons: list[str] = []
        self.progress_ok = True  # False once progress cannot be recorded (a full disk): stop trying
        self.blocked = False  # True once an entry could not be kept aside: the file must stay

    def run(self) -> FileResult:
        spool = self.spool
        content = spool.read()
        for line, raw, reason in content.malformed:
            if line not in spool.aside_lines:
                self._aside(raw, f"malformed entry (line {line + 1}): {reason}", line=line)
        pending = to_send(content.entries, spool.done_seq)
        if pending and spool.run_id is None and pending[0].get("op") != "create":
            # created earlier, but its id was not recorded: find it again by its token first
            creation = next((entry for entry in content.entries if entry.get("op") == "create"), None)
            if creation is not None:
                pending.insert(0, creation)
        uri = spool.tracking_uri
        if pending and uri in self.unreachable:
            return self._stop(len(pending), self.unreachable[uri], tried=False)
        client = None
        if pending or spool.owned:
            problem = store_problem(uri, connect=False)
            try:
                client = None if problem else self.client_for(uri)
            except Exception as exc:
                problem = describe(exc)
                if is_transient(exc):
                    self.unreachable[uri] = problem
            if client is None:
                return self._stop(len(pending), problem or "no client", tried=True)
        failed_creation: str | None = None
        for index, entry in enumerate(pending):
            if failed_creation is not None:
                self._reject(entry, f"the run could not be created: {failed_creation}")
                continue
            outcome = self._send(client, entry)
            if outcome == "transient":
                return self._stop(len(pending) - index, self.unreachable[uri], tried=True)
            if outcome is not None:  # refused for good
                self._reject(entry, outcome)
                if entry.get("op") == "create":
                    failed_creation = outcome
        has_end = any(entry.get("op") == "terminate" for entry in content.entries)
        if not self._end_orphan(client, has_end, content.last_t_ms):
            return self._finish()
        try:
            if not self.blocked:
                spool.remove()
            else:
                self.notes.append(f"{spool.path} is kept: it holds entries that could not be set aside")
        except OSError as exc:
            self.notes.append(f"{spool.path} could not be removed ({describe(exc)}): everything in it was "
                              "sent; delete it, or a later sync sends it again (without duplicates)")
        return self._finish()

    # -- sending -------------------------------------------------------------------------------
    def _send(self, client: Any, entry: dict[str, Any]) -> str | None:
        """None if sent; "transient" if the server is unreachable; else why it was refused."""
        for attempt in range(self.retries + 1):
            try:
                run_id, created, _ = send(client, entry, self.spool.run_id)
            except Exception as exc:
                if not is_transient(exc):
                    return describe(exc)
                self.unreachable[self.spool.tracking_uri] = describe(exc)
                if attempt < self.retries:
                    time.sleep(self.backoff_s * 2**attempt)
                continue
            self.unreachable.pop(self.spool.tracking_uri, None)
            if entry.get("op") == "create":
                self.result.created = created
                self.result.found = not created and self.spool.run_id is None
                self.result.label = f"run {run_id}"
            else:
                self.result.sent += 1
            self._progress(entry["seq"], run_id)
            return None
        return "transient"

    def _progress(self, seq: int, run_id: str | None = None) -> None:
        if run_id:
            self.spool.run_id = run_id
        if not self.progress_ok or self.blocked:  # the watermark never passes an entry kept nowhere else
            return
        try:
            self.spool.mark_done(seq, run_id)
        except OSError as exc:
            self.progress_ok = False
            self.notes.append(f"progress could not be recorded ({describe(exc)}): a later sync sends the "
                              "same entries again (without duplicates)")

    def _reject(self, entry: dict[str, Any], reason: str) -> None:
        self._aside(entry, reason)
        self._progress(entry["seq"])

    def _aside(self, entry: dict[str, Any] | str, reason: str, *, line: int | None = None) -> None:
        self.reasons.append(reason)
        try:
            self.result.rejected_file = self.spool.reject(entry, reason)
        except OSError as exc:
            self.blocked = True
            self.notes.append(f"a refused or malformed entry could not be kept aside ({describe(exc)}): "
                              f"it stays in {self.spool.path}")
            return
        self.result.rejected += 1
        if line is not None:
            try:
                self.spool.mark_aside(line)
            except OSError:
                pass

    def _end_orphan(self, client: Any, has_end: bool, last_t_ms: int) -> bool:
        """End an orphaned run ``KILLED``; False if the file must be kept (its writer may still run)."""
        spool = self.spool
        if has_end or not spool.owned or spool.run_id is None:
            return True
        writer = spool.writer
        state = writer.state() if writer is not None else "unknown"
        if state != "dead":
            who = writer.describe() if writer is not None else "an unknown process"
            self.notes.append(f"not ended: its writer ({who}) {'still runs' if state == 'alive' else 'may still run'}")
            return False
        try:
            run = client.get_run(spool.run_id)
            if run.info.status != "RUNNING":
                return True
            end_ms = last_t_ms or int(spool.header.get("created_ms") or 0) or None
            client.set_terminated(spool.run_id, status="KILLED", end_time=end_ms)
        except Exception as exc:
            self.notes.append(f"could not end it KILLED ({describe(exc)})")
            return False
        self.result.ended = f"KILLED (its writer, {writer.describe()}, is gone)"  # type: ignore[union-attr]
        return True

    def _stop(self, left: int, error: str, *, tried: bool) -> FileResult:
        self.result.outcome = "pending"
        self.result.pending = left
        self.result.error = error if tried else f"not tried: {error}"
        return self._finish()

    def _finish(self) -> FileResult:
        self.result.notes = tuple(self.notes)
        self.result.reasons = tuple(self.reasons)
        if self.result.outcome == "done" and self.notes and self.spool.path.exists():
            self.result.outcome = "kept"
        return self.result


__all__ = ["FileResult", "replay_file"]
