"""Is the process that wrote a spool file still running? Told safely: host, boot, pid and start time.

A pid alone is not enough: after the writer died its pid can be reused by another process,
and on another host the same pid means nothing. A writer is identified by its host name, the
kernel's boot id (a reboot kills every process), its pid and its start time; a process with the
same pid but another start time is another process.

Example:
    >>> me = WriterIdentity.current()
    >>> me.state()
    'alive'
    >>> WriterIdentity(me.host, me.boot_id, me.pid, me.started_s - 1000.0).state()   # the pid was reused
    'dead'
    >>> WriterIdentity(me.host, me.boot_id, me.pid, me.started_s + 5.0, me.start_ticks).state()  # the clock drifted
    'alive'
    >>> WriterIdentity(me.host, me.boot_id, me.pid, me.started_s, me.start_ticks + 100).state()  # the pid was reused
    'dead'
    >>> WriterIdentity("another-host", "", me.pid, me.started_s).state()              # cannot be seen from here
    'unknown'
    >>> WriterIdentity(me.host, "an-earlier-boot", me.pid, me.started_s).state()     # the host rebooted since
    'dead'
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

WriterState = Literal["alive", "dead", "unknown"]

_START_TOLERANCE_S = 1.0
"""Process start times are read from /proc in clock ticks: allow for the rounding."""


@functools.cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        try:
            import psutil

            return f"boot-{psutil.boot_time():.0f}"
        except Exception:
            return ""


_OWN_START_S: dict[int, float] = {}
_OWN_START_TICKS: dict[int, int | None] = {}


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks after boot (Linux ``/proc``; None elsewhere or if it is gone). Unlike a
    start time in seconds since the epoch — boot time (a whole second, from the wall clock) plus these ticks — it
    does not move when the wall clock drifts from the time since boot (here ~150 ppm: a second every two hours)."""
    from mlflow_green.measure.procfs import process_stat

    try:
        return process_stat(pid).start_ticks
    except (ProcessLookupError, OSError):
        return None


def _own_start_s(pid: int) -> float:
    """This process's start time, read once (``pid`` is ours: a forked child reads its own); 0 if unknown."""
    started = _OWN_START_S.get(pid)
    if started is None:
        started = _started_s(pid)
        if started is None:
            return 0.0
        _OWN_START_S[pid] = started
    return started


def _started_s(pid: int) -> float | None:
    """The start time of ``pid``; None if there is no such process or it is a zombie (it has exited)."""
    try:
        import psutil

        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(process.create_time())
    except Exception:  # no such process, or not allowed to look
        return None


@dataclass(frozen=True)
class WriterIdentity:
    """Who wrote a spool file.

    Attributes:
        host: ``socket.gethostname()`` of the writer.
        boot_id: The kernel boot id of the writer's host ("" where unknown).
        pid: The writer's process id.
        started_s: The writer's start time (seconds since the epoch), as the OS reports it.
        start_ticks: The same in clock ticks after boot (Linux; None elsewhere, and in spool files of
            versions before it): compared first, being exact.
    """

    host: str
    boot_id: str
    pid: int
    started_s: float
    start_ticks: int | None = None

    @classmethod
    def current(cls) -> WriterIdentity:
        """This process (its start time read once per process: a spool file is made at every fit)."""
        pid = os.getpid()
        if pid not in _OWN_START_TICKS:
            _OWN_START_TICKS[pid] = _start_ticks(pid)
        return cls(socket.gethostname(), _boot_id(), pid, _own_start_s(pid), _OWN_START_TICKS[pid])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> WriterIdentity | None:
        """Read the ``writer`` field of a spool header (None if absent or malformed)."""
        if not isinstance(data, Mapping):
            return None
        try:
            ticks = data.get("start_ticks")
            return cls(str(data["host"]), str(data.get("boot_id", "")), int(data["pid"]), float(data["started_s"]),
                       None if ticks is None else int(ticks))
        except (KeyError, TypeError, ValueError):
            return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def state(self) -> WriterState:
        """``alive``, ``dead`` or ``unknown`` (another host: its processes cannot be seen from here)."""
        if self.host != socket.gethostname():
            return "unknown"
        if self.boot_id and _boot_id() and self.boot_id != _boot_id():
            return "dead"  # the host rebooted since
        started = _started_s(self.pid)
        if started is None:
            return "dead" if not _pid_exists(self.pid) or _is_zombie(self.pid) else "unknown"
        ticks = _start_ticks(self.pid) if self.start_ticks is not None else None
        if ticks is not None:  # exact, whatever the wall clock did since the writer started
            return "alive" if ticks == self.start_ticks else "dead"
        return "alive" if abs(started - self.started_s) <= _START_TOLERANCE_S else "dead"

    def describe(self) -> str:
        """``pid 123 on host h``, for messages."""
        return f"pid {self.pid} on host {self.host}"


def _is_zombie(pid: int) -> bool:
    try:
        import psutil

        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except Exception:
        return False


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["WriterIdentity", "WriterState"]
