"""Where a writer keeps its writes until the server takes them: its spool file, else a fallback, else memory.

The spool file is written before anything is sent. If it cannot be (the folder is read-only,
full, or was removed), a new file holding every write not sent yet is made in the same folder,
else in the fallback folder (``MLFLOW_GREEN_SPOOL_FALLBACK_DIR``); failing both, the writes stay in
memory only. The problem is reported once, saying where the writes went; the writer's closing
message counts what is in memory only. Nothing here ever raises into training.

Example::

    keeper = SpoolKeeper(folder, header=lambda: {"tracking_uri": uri, "run_id": run_id}, label=lambda: "run 1a2b")
    keeper.keep({"seq": 1, "t_ms": 0, "op": "tags", "tags": {}}, backlog=[])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow_green.record.failures import describe
from mlflow_green.record.messages import recovery_command
from mlflow_green.record.spool import SpoolFile, fallback_spool_dir

logger = logging.getLogger(__name__)

Entry = Mapping[str, Any]


class SpoolKeeper:
    """The spool of one writer (see the module docstring). Callers serialise calls (the writer's lock).

    Args:
        folder: The spool folder.
        header: Makes the header of a new spool file (tracking URI, run or token, owned).
        label: The run as users know it, for messages.
    """

    def __init__(self, folder: Path, *, header: Callable[[], dict[str, Any]], label: Callable[[], str]) -> None:
        self.folder = folder
        self.spool: SpoolFile | None = None
        self.problem: str | None = None
        self.progress_problem: str | None = None
        self.unspooled: set[int] = set()
        self.released_path: Path | None = None  # the spool file left for a sync by release()
        self._header = header
        self._label = label
        self._reported = False
        self._last_error: tuple[Path, BaseException] | None = None
        if not self._open(folder, ()):
            failed, error = self._last_error or (folder, OSError("unknown error"))
            self._failed(failed, error, ())

    @property
    def path(self) -> Path | None:
        """The spool file in use (None: memory only)."""
        return self.spool.path if self.spool is not None else None

    def keep(self, entry: Entry, backlog: Iterable[Entry] | Callable[[], Iterable[Entry]]) -> None:
        """Append ``entry``; ``backlog`` (the writes not sent yet, or a function that lists them, called
        only when needed) goes into any new file made meanwhile."""
        if self.spool is not None:
            try:
                self.spool.append(entry)
                return
            except (OSError, ValueError) as exc:
                failed, self.spool = self.spool, None
                failed.release()
                self._failed(failed.path.parent, exc, [*_listed(backlog), entry])
        elif self._open(self.folder, [*_listed(backlog), entry]):  # e.g. space was freed meanwhile
            return
        if self.spool is None:
            self.unspooled.add(entry["seq"])

    def done(self, seqs: Iterable[int], run_id: str | None = None) -> None:
        """Record that the writes ``seqs`` were handled, in one progress write (a failure is remembered,
        not raised: a later replay resends, harmlessly)."""
        seqs = list(seqs)
        self.unspooled.difference_update(seqs)
        if self.spool is None or not seqs:
            return
        try:
            self.spool.mark_done(max(seqs), run_id)
        except OSError as exc:
            self.progress_problem = self.progress_problem or describe(exc)

    def reject(self, entry: Entry, reason: str) -> Path | None:
        """Keep a refused write in ``rejected/``; the file, or None if it could not be kept."""
        if self.spool is None:
            return None
        try:
            return self.spool.reject(entry, reason)
        except OSError:
            return None

    def sync_to_disk(self) -> None:
        if self.spool is not None:
            self.spool.sync_to_disk()

    def remove(self) -> str | None:
        """Delete the fully sent spool file; why it could not be, or None."""
        spool, self.spool = self.spool, None
        if spool is None:
            return None
        try:
            spool.remove()
        except OSError as exc:
            return f"{spool.path}: {describe(exc)}"
        return None

    def release(self) -> None:
        """Unlock the spool file, leaving it for a sync (as when the process ends)."""
        spool, self.spool = self.spool, None
        if spool is not None:
            self.released_path = spool.path
            spool.release()

    # -- internals ---------------------------------------------------------------------------
    def _open(self, folder: Path, backlog: Iterable[Entry]) -> bool:
        backlog = list(backlog)
        try:
            spool = SpoolFile.create(folder, self._header())
            try:
                for entry in backlog:
                    spool.append(entry)
            except BaseException:
                spool.remove()
                raise
        except (OSError, ValueError) as exc:
            self._last_error = (folder, exc)
            return False
        self.spool, self.released_path = spool, None
        self.unspooled.difference_update(entry["seq"] for entry in backlog)
        return True

    def _failed(self, folder: Path, exc: BaseException, backlog: Iterable[Entry]) -> None:
        """The spool in ``folder`` failed: a new file there, else in the fallback folder; reported once."""
        backlog = list(backlog)
        for candidate in dict.fromkeys((folder, self.folder, fallback_spool_dir())):
            if self._open(candidate, backlog):
                break
        self.problem = f"{folder}: {describe(exc)}"
        if not self._reported:
            self._reported = True
            logger.warning("%s", self._message(folder, exc))

    def _message(self, folder: Path, exc: BaseException) -> str:
        head = f"mlflow-green: cannot write the spool of {self._label()} in {folder} ({describe(exc)})"
        moved_to = self.path
        if moved_to is not None and moved_to.parent == folder:
            return f"{head}; made a new spool file {moved_to} holding every write not sent yet: nothing was lost"
        if moved_to is not None:
            uri = str(self._header().get("tracking_uri") or "")
            return (f"{head}; its writes not sent yet, and the next ones, are spooled in {moved_to} instead "
                    f"(send them later with `{recovery_command(uri, moved_to.parent)}`)")
        return (f"{head}, nor in {fallback_spool_dir()}; its writes are kept in memory only and sent while this "
                "process runs: any the tracking server has not taken when it ends are lost")


__all__ = ["SpoolKeeper"]


def _listed(backlog: Iterable[Entry] | Callable[[], Iterable[Entry]]) -> Iterable[Entry]:
    return backlog() if callable(backlog) else backlog
