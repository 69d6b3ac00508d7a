"""A process tree read incrementally from Linux ``/proc``: only its members between rare full scans.

Finding a process's descendants needs every process's parent, i.e. reading the ``stat`` file of
every process on the machine (about 1 ms for 130 processes, ten times more on a busy host). A
meter reads the tree at every window boundary, so :class:`TreeScanner` remembers the tree and,
at each read, reads only:

- the ``stat`` of the processes that were in the tree at the last read (their CPU time, memory
  and parent: one small read each), and
- the ``stat`` of the processes created since the last read, if any: the kernel hands out PIDs in
  increasing order (``/proc/sys/kernel/ns_last_pid``, the last one handed out, wraps at
  ``pid_max``), so while it has not moved no process was created anywhere, and when it has moved
  the new processes are the listed PIDs above the previous value (all of them after a wrap).

Membership is then worked out from the parents just read, exactly as a full walk would: the root,
and every process whose parent is in the tree, minus excluded processes and their descendants. A
worker started since the last read is found at this read; one that exited is gone from the tree
and its CPU time is in its parent's reaped-children time; a process re-parented away from the tree
(its parent in the tree exited) leaves it. A full scan is made at the first read, every
:data:`FULL_RESCAN_S` seconds, and at every read where ``ns_last_pid`` cannot be read: it catches
what the PID order cannot show (a process adopted by a sub-reaper in the tree, or more than
``pid_max`` processes created between two reads).

Example:
    >>> scanner = TreeScanner()
    >>> usage = scanner.read()
    >>> os.getpid() in usage.pids and usage.cpu_s > 0 and usage.rss_bytes > 0
    True
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mlflow_green.measure import procfs

FULL_RESCAN_S = 30.0
"""Seconds between two full scans of every process's parent."""


@dataclass(frozen=True)
class TreeUsage:
    """A process tree at one instant.

    Attributes:
        pids: Its processes (the root and its descendants that are not excluded).
        cpu_s: Their user + system CPU seconds, with the time of the children they reaped.
        rss_bytes: Their resident memory, summed.
    """

    pids: frozenset[int]
    cpu_s: float
    rss_bytes: int


class TreeScanner:
    """Reads one process tree, scanning every process only when needed (see the module docstring).

    Args:
        root_pid: The process whose tree is read (default: this process).
        exclude_pids: Processes that are not billed, with their descendants.
        clock: Monotonic seconds (for the full rescans).
        last_pid: The last PID handed out, or None when unknown (then every read is a full scan).
        listed_pids: Every PID now.
        stat: One process's stat (raises ``ProcessLookupError`` / ``OSError`` when it cannot be read).

    Thread-safe. Pickled (and deep-copied) as a new scanner: a copy starts with a full scan.
    """

    def __init__(
        self,
        root_pid: int | None = None,
        exclude_pids: Iterable[int] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        last_pid: Callable[[], int | None] = procfs.last_pid,
        listed_pids: Callable[[], Iterable[int]] = procfs.listed_pids,
        stat: Callable[[int], procfs.ProcessStat] = procfs.process_stat,
    ) -> None:
        self.root_pid = os.getpid() if root_pid is None else int(root_pid)
        self.exclude_pids = frozenset(exclude_pids)
        self._clock = clock
        self._last_pid_of = last_pid
        self._listed = listed_pids
        self._stat = stat
        self._lock = threading.Lock()
        self._members: frozenset[int] = frozenset()
        self._last_pid: int | None = None
        self._full_at_s = -math.inf
        self.full_scans = 0
        """How many full scans were made (for tests and benchmarks)."""

    def __reduce__(self) -> tuple[object, ...]:
        return (TreeScanner, (self.root_pid, self.exclude_pids))

    def read(self) -> TreeUsage:
        """The tree now, with its CPU time and memory (raises ``OSError`` if ``/proc`` cannot be listed)."""
        with self._lock:
            last_pid = self._last_pid_of()
            now_s = self._clock()
            if last_pid is None or self._last_pid is None or now_s - self._full_at_s >= FULL_RESCAN_S:
                candidates: Iterable[int] = self._listed()
                self._full_at_s, self.full_scans = now_s, self.full_scans + 1
            elif last_pid == self._last_pid:  # no process was created since the last read
                candidates = self._members
            else:
                candidates = self._members.union(_created_since(self._listed(), self._last_pid, last_pid))
            stats = self._stats({self.root_pid, *candidates})
            members = self._tree(stats)
            self._members, self._last_pid = members, last_pid
        alive = [stats[pid] for pid in members if pid in stats]
        return TreeUsage(members, sum(s.cpu_s for s in alive), sum(s.rss_bytes for s in alive))

    def _stats(self, pids: Iterable[int]) -> dict[int, procfs.ProcessStat]:
        found = {}
        for pid in pids:
            try:
                found[pid] = self._stat(pid)
            except (ProcessLookupError, OSError):  # exited meanwhile: its parent reaps it (and its time)
                continue
        return found

    def _tree(self, stats: dict[int, procfs.ProcessStat]) -> frozenset[int]:
        """The root and its descendants among ``stats``, by the parents just read, minus excluded ones."""
        if self.root_pid in self.exclude_pids:
            return frozenset()
        children: dict[int, list[int]] = {}
        for pid, stat in stats.items():
            children.setdefault(stat.ppid, []).append(pid)
        found, stack = {self.root_pid}, [self.root_pid]
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in found and child not in self.exclude_pids:
                    found.add(child)
                    stack.append(child)
        return frozenset(found)


def _created_since(listed: Iterable[int], previous: int, last: int) -> list[int]:
    """The listed PIDs that may have been handed out after ``previous`` (the last PID was ``previous``,
    it is ``last`` now): those above ``previous``; after a wrap (``last < previous``), also those up to ``last``.

    Example:
        >>> _created_since([1, 5, 90, 120], 100, 110), _created_since([1, 5, 90, 120], 100, 7)
        ([120], [1, 5, 120])
    """
    if last >= previous:
        return [pid for pid in listed if pid > previous]
    return [pid for pid in listed if pid > previous or pid <= last]


def linux_scanner_available() -> bool:
    """True where ``/proc`` gives every process's parent (Linux)."""
    return procfs.LINUX


__all__ = ["FULL_RESCAN_S", "TreeScanner", "TreeUsage", "linux_scanner_available"]
