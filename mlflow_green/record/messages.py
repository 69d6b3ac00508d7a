"""Exact messages about writes that did not reach MLflow: how many, where they are, how to recover them.

Example:
    >>> recovery_command("http://host:5000", None)
    'mlflow-green sync --tracking-uri http://host:5000'
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow_green.formatting import plural
from mlflow_green.record.spool import default_spool_dir

if TYPE_CHECKING:
    from mlflow_green.record.recorder import RunRecorder


@dataclass
class WriteCounts:
    """What became of one writer's writes (the run's creation not counted).

    Attributes:
        submitted: Writes made by training. sent: taken by the server.
        rejected: Refused by the server for good (or sent to a run that could not be created).
        rejected_lost: Of those, the ones that could not be kept in the rejected file either.
        reasons: The server's messages for the refused writes.
        rejected_file: Where the refused writes are kept.
        remove_problem: Why a fully sent spool file could not be deleted.
    """

    submitted: int = 0
    sent: int = 0
    rejected: int = 0
    rejected_lost: int = 0
    reasons: list[str] = field(default_factory=list)
    rejected_file: Path | None = None
    remove_problem: str | None = None


def recovery_command(tracking_uri: str, spool_dir: Path | None) -> str:
    """The ``mlflow-green sync`` command that sends what a spool folder holds for ``tracking_uri``."""
    command = f"mlflow-green sync --tracking-uri {shlex.quote(tracking_uri)}"
    if spool_dir is not None and spool_dir.resolve() != default_spool_dir().resolve():
        command += f" --spool-dir {shlex.quote(str(spool_dir))}"
    return command


def _writes(count: int) -> str:
    return plural(count, "write")


def _why_not_sent(recorder: RunRecorder, running: bool) -> list[str]:
    """Why writes are not sent (``running``: the writer's thread runs, read once by the caller): a writer stopped, or
    whose thread is not running; a request with no answer yet (for how long: MLflow's client may be retrying it
    inside); else the last error, whose retry waits."""
    last = recorder.failures[-1:]
    if not running:
        return [*last, "the writer was stopped" if recorder.stopped else "the writer's thread is not running"]
    since_s = recorder.sending_since_s
    if since_s is not None:
        waiting = f"no answer yet to a request sent {time.monotonic() - since_s:.1f} s ago (MLflow's client may be retrying it)"
        return [waiting, *(f"last error: {error}" for error in last)]
    return last or ["the writer has not sent them yet"]


def close_message(recorder: RunRecorder) -> str | None:
    """What the end of a fit says when not everything reached the server (None when it all did)."""
    queue, unspooled = recorder.backlog()
    counts = recorder.counts
    creation_pending = any(entry["op"] == "create" for entry in queue)
    waiting = [entry for entry in queue if entry["op"] != "create"]
    if not queue and not counts.rejected and not counts.remove_problem and recorder.creation_error is None:
        return None
    uri = recorder.tracking_uri
    parts: list[str] = []
    head = f"mlflow-green: {recorder.label()} on {uri}: {counts.sent} of {_writes(counts.submitted)} sent"
    if queue:
        running = recorder.thread_running  # read once: the thread may end meanwhile
        why = "; ".join(_why_not_sent(recorder, running))
        parts.append(f"{_writes(len(waiting))} not sent yet ({why})")
        if creation_pending:
            parts.append("the run itself is not created yet (it will be, first)")
        kept = [entry for entry in queue if entry["seq"] not in unspooled]
        lost = [entry for entry in waiting if entry["seq"] in unspooled]
        path = recorder.keeper.path or recorder.keeper.released_path
        if kept and path is not None:
            which = f"{len(waiting) - len(lost)} of them " if lost else ""
            sending = "this process keeps sending them while it runs; " if running else ""
            parts.append(f"{which}kept in {path}: {sending}to send them later run `{recovery_command(uri, path.parent)}`")
        if lost:
            parts.append(f"{_writes(len(lost))} could not be spooled ({recorder.keeper.problem or 'no spool'}) and are "
                         "only in memory: they are lost if this process ends before the server takes them")
    if recorder.creation_error is not None:
        parts.append(f"the server refused to create the run ({recorder.creation_error})")
    if counts.rejected:
        where = f"kept in {counts.rejected_file}" if counts.rejected_file else "not kept"
        if counts.rejected_lost and counts.rejected_file:
            where += f" ({counts.rejected_lost} could not be kept and are lost)"
        parts.append(f"{_writes(counts.rejected)} refused by the server ({counts.reasons[0]}), {where}")
    if counts.remove_problem:
        parts.append(f"the fully sent spool file could not be deleted ({counts.remove_problem})")
    return "; ".join([head, *parts]) + "."


__all__ = ["WriteCounts", "close_message", "recovery_command"]
