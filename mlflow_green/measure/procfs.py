"""CPU times, memory and children of processes, read from Linux ``/proc`` (psutil elsewhere).

Reading a few ``/proc`` files is what psutil does on Linux, but importing psutil costs ~10 ms,
a fifth of the cold-start budget (import + start + stop ≤ 50 ms, docs/performance.md). On Linux these
functions read ``/proc`` directly, with the same units and fields as psutil; on other systems,
or when ``/proc`` is missing, they call psutil.

Example:
    >>> times = cpu_times()
    >>> times.idle > 0 and times.user > 0
    True
    >>> process_cpu_s(os.getpid()) > 0
    True
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from typing import Any, NamedTuple

_LINUX = sys.platform.startswith("linux") and os.path.isfile("/proc/stat")
LINUX = _LINUX
"""True where this module reads ``/proc`` itself (Linux)."""


class CpuTimes(NamedTuple):
    """Machine-wide cumulative CPU times in seconds (all CPUs summed), as ``psutil.cpu_times()`` on Linux."""

    user: float
    nice: float
    system: float
    idle: float
    iowait: float
    irq: float
    softirq: float
    steal: float
    guest: float
    guest_nice: float


@functools.cache
def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@functools.cache
def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


OWN_PID = [os.getpid()]
"""``[this process's PID]``, kept up to date in a forked child (see :func:`own_pid`); a window
boundary's hot path reads ``OWN_PID[0]`` without the call."""


def own_pid() -> int:
    """This process's PID, without a system call (glibc no longer caches ``getpid``): kept up to date in
    a forked child by ``os.register_at_fork`` (where there is no fork, the PID never changes)."""
    return OWN_PID[0]


def _forked() -> None:
    OWN_PID[0] = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def page_size() -> int:
    """Bytes per memory page (``statm`` counts pages)."""
    return _page_size()


class KeptOpen:
    """A ``/proc`` file kept open and read whole with one ``pread`` each time (one system call, where
    ``open`` + ``read`` + ``close`` take three, each letting other Python threads take the GIL).

    Reopened once if the descriptor went bad (closed by someone else). Thread-safe (``pread`` has no
    shared offset); closed on ``exec``.

    Example:
        >>> KeptOpen("/proc/self/stat").read().startswith(str(os.getpid()).encode())
        True
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def read(self, size: int = 65536) -> bytes:
        """The file's content now (``OSError`` as ``os.open`` / ``os.pread`` raise it)."""
        try:
            return os.pread(self._descriptor(), size, 0)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
        self._fd = None  # someone closed our descriptor: open the file again
        return os.pread(self._descriptor(), size, 0)

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        return self._fd

    def close(self) -> None:
        """Close the descriptor (the next read opens the file again)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self.close()

    def __reduce__(self) -> tuple[object, ...]:
        return (KeptOpen, (self.path,))


_LAST_PID = KeptOpen("/proc/sys/kernel/ns_last_pid")


def cpu_times() -> Any:
    """The machine's cumulative CPU times (``/proc/stat``; ``psutil.cpu_times()`` elsewhere)."""
    if _LINUX:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()[1:]
        values = [int(v) / _clock_ticks() for v in fields[:10]]
        return CpuTimes(*(values + [0.0] * (10 - len(values))))
    import psutil

    return psutil.cpu_times()


def _stat_fields(pid: int) -> list[bytes]:
    """The fields of ``/proc/PID/stat`` after the command name (which may contain spaces)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        return stat_fields(f.read())


def stat_fields(data: bytes) -> list[bytes]:
    """The fields of a ``/proc/PID/stat`` line after the command name (which may contain spaces)."""
    return data[data.rindex(b")") + 2 :].split()


def process_cpu_s(pid: int) -> float:
    """User + system seconds of a process plus those of the children it reaped.

    Raises:
        ProcessLookupError: the process does not exist (any more).
    """
    if _LINUX:
        try:
            fields = _stat_fields(pid)
        except (FileNotFoundError, ProcessLookupError) as exc:
            raise ProcessLookupError(pid) from exc
        # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17
        return sum(int(v) for v in fields[11:15]) / _clock_ticks()
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess as exc:
        raise ProcessLookupError(pid) from exc
    return times.user + times.system + getattr(times, "children_user", 0.0) + getattr(times, "children_system", 0.0)


class ProcessStat(NamedTuple):
    """One process's line of ``/proc/PID/stat``, in the units this package uses."""

    ppid: int
    cpu_s: float
    """User + system seconds of the process plus those of the children it reaped."""
    start_ticks: int
    """When the process started (clock ticks after boot): tells a reused PID from the process seen before."""
    rss_bytes: int


def process_stat(pid: int) -> ProcessStat:
    """Parent, CPU time, start time and resident memory of a process in one read (Linux ``/proc`` only).

    Raises:
        ProcessLookupError: the process does not exist (any more).
        OSError: there is no ``/proc`` (not Linux) or it cannot be read.

    Example:
        >>> process_stat(os.getpid()).ppid == os.getppid()
        True
    """
    try:
        fields = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise ProcessLookupError(pid) from exc
    return parse_stat(pid, fields)


def parse_stat(pid: int, fields: list[bytes]) -> ProcessStat:
    """A :class:`ProcessStat` from the fields of ``/proc/PID/stat`` after the command name."""
    try:  # fields[0] is field 3 (state): ppid 4, utime..cstime 14-17, starttime 22, rss 24 (pages)
        return ProcessStat(
            int(fields[1]), sum(int(v) for v in fields[11:15]) / _clock_ticks(), int(fields[19]),
            int(fields[21]) * _page_size(),
        )
    except (IndexError, ValueError) as exc:  # a kernel without these fields: treat as unreadable
        raise OSError(f"/proc/{pid}/stat: unexpected format") from exc


def last_pid() -> int | None:
    """The last PID the kernel handed out in this PID namespace (``/proc/sys/kernel/ns_last_pid``), or None.

    Process and thread IDs are handed out in increasing order until they wrap at ``pid_max``: while
    it has not moved, no process was created anywhere on the machine.
    """
    if not _LINUX:
        return None
    try:
        return int(_LAST_PID.read(64))
    except (OSError, ValueError):
        return None


def listed_pids() -> list[int]:
    """The PIDs of every process now (one listing of ``/proc``; Linux only)."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` now, by the kernel's children lists (``/proc/PID/task/TID/children``
    of each of its threads, then of theirs): a few small reads instead of every process's ``stat``.

    Raises ``OSError`` where the kernel has no children lists (built without ``CONFIG_PROC_CHILDREN``)
    or ``pid`` is gone; a thread or process that ends meanwhile is skipped (its children are re-parented
    to a thread or process that is read after it, or out of the tree).
    """
    if not _LINUX:
        raise OSError("no /proc children lists on this platform")
    os.stat(f"/proc/{pid}/task/{pid}/children")  # the lists exist (raises otherwise)
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:  # ended meanwhile
            continue
        for tid in threads:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as f:
                    listed = f.read().split()
            except OSError:  # the thread ended meanwhile
                continue
            for child in listed:
                found.append(int(child))
                stack.append(int(child))
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (raises ProcessLookupError if it is gone)."""
    if _LINUX:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * _page_size()
        except (FileNotFoundError, ProcessLookupError) as exc:
            raise ProcessLookupError(pid) from exc
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.NoSuchProcess as exc:
        raise ProcessLookupError(pid) from exc


def children_by_parent() -> dict[int, list[int]]:
    """Every process's children, keyed by parent PID (one pass over ``/proc``)."""
    found: dict[int, list[int]] = {}
    if _LINUX:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                ppid = int(_stat_fields(int(name))[1])
            except (OSError, ValueError, IndexError):  # exited meanwhile, or not readable
                continue
            found.setdefault(ppid, []).append(int(name))
        return found
    import psutil

    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info.get("ppid")
        if ppid is not None:
            found.setdefault(int(ppid), []).append(proc.pid)
    return found


def pid_exists(pid: int) -> bool:
    """Whether a process with this PID exists (``/proc/PID``; ``psutil.pid_exists`` elsewhere).

    Example:
        >>> pid_exists(os.getpid()), pid_exists(-1)
        (True, False)
    """
    if pid <= 0:
        return False
    if _LINUX:
        return os.path.exists(f"/proc/{pid}")
    import psutil

    return bool(psutil.pid_exists(pid))


def total_ram_bytes() -> int:
    """Installed memory in bytes (``sysconf``; psutil elsewhere); 0 if unknown."""
    try:
        if _LINUX:
            return int(os.sysconf("SC_PHYS_PAGES")) * _page_size()
        import psutil

        return int(psutil.virtual_memory().total)
    except (OSError, ValueError, ImportError):
        return 0
