"""``/proc/PID/stat`` read through descriptors kept open, and this process read from its own clocks.

Example:
    >>> files = StatFiles()
    >>> files(os.getpid()).ppid == os.getppid()
    True
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Collection

from mlflow_green.measure import procfs

RSS_REFRESH_S = 0.5
"""Seconds for which this process's resident memory, once read, is reused (by default: see
:meth:`StatFiles.own_usage`)."""


class StatFiles:
    """Reads ``/proc/PID/stat`` through a descriptor kept open per process (one ``pread`` a read).

    A kept descriptor stays bound to its process: once that process is reaped it answers
    ``ESRCH``, even if its PID was handed out again — then the PID's current process, if any, is
    opened afresh. :meth:`retain` closes the descriptors of processes no longer wanted.

    The calling process itself is read without ``/proc/PID/stat`` (which the kernel builds by
    walking every thread): its CPU time from the process CPU clock plus its reaped children's
    time (``getrusage(RUSAGE_CHILDREN)``), its memory from ``/proc/self/statm`` — the same figures, to the
    nanosecond rather than the clock tick. Its memory is read again at most every
    :data:`RSS_REFRESH_S` seconds (``statm`` takes the process's memory-map lock, which a training's
    allocator threads contend for; resident memory moves slowly and bills only the RAM estimate), and a
    window boundary may reuse the children's time the background looker read (:meth:`refresh`).

    Example:
        >>> files = StatFiles()
        >>> files(os.getpid()).ppid == os.getppid()
        True
        >>> files.retain(()); len(files)
        0
    """

    def __init__(self) -> None:
        self._files: dict[int, procfs.KeptOpen] = {}
        self._self: tuple[int, procfs.ProcessStat, procfs.KeptOpen] | None = None
        self._rss: tuple[float, int] = (-math.inf, 0)
        self._children: tuple[float, float] = (-math.inf, 0.0)  # (read at, reaped children's CPU seconds)

    def __len__(self) -> int:
        return len(self._files)

    def __call__(self, pid: int) -> procfs.ProcessStat:
        if pid == os.getpid():
            return self._own()
        kept = self._files.get(pid)
        if kept is not None:
            try:
                return procfs.parse_stat(pid, procfs.stat_fields(kept.read(4096)))
            except OSError:  # that process is gone (ESRCH); the PID may name another one now
                kept.close()
                del self._files[pid]
        kept = procfs.KeptOpen(f"/proc/{pid}/stat")
        try:
            data = kept.read(4096)
        except FileNotFoundError as exc:
            raise ProcessLookupError(pid) from exc
        except OSError:
            kept.close()
            raise
        self._files[pid] = kept
        return procfs.parse_stat(pid, procfs.stat_fields(data))

    def retain(self, pids: Collection[int]) -> None:
        """Close the descriptors of every process not in ``pids``."""
        for pid in [pid for pid in self._files if pid not in pids]:
            self._files.pop(pid).close()

    def close(self) -> None:
        """Close every kept descriptor (the next call opens what it needs again)."""
        self.retain(())
        own, self._self = self._self, None
        if own is not None:
            own[2].close()

    def own_usage(self, now_s: float | None = None, rss_max_age_s: float = RSS_REFRESH_S,
                  children_max_age_s: float = 0.0) -> tuple[float, int]:
        """(CPU seconds with those of the reaped children, resident bytes) of the calling process, from
        its clocks: the cheapest read there is (a window boundary takes it on the training thread).
        ``now_s``: ``time.monotonic()`` now, if the caller has it; the resident memory is read again
        if the last read (here or by :meth:`refresh`) is older than ``rss_max_age_s``, the reaped children's
        time if older than ``children_max_age_s`` (by default always: a window boundary on a tree without
        children passes the looker's interval — a child reaped meanwhile is billed to a window a look later)."""
        own = self._self
        if own is None or own[0] != procfs.OWN_PID[0]:  # first call, or a forked child using a copy
            own = self._open_own()
        if now_s is None:
            now_s = time.monotonic()
        read_s, rss_bytes = self._rss
        if now_s - read_s >= rss_max_age_s:
            rss_bytes = self._read_rss(own, now_s)
        read_s, children_s = self._children
        if now_s - read_s >= children_max_age_s:
            children_s = self._read_children(now_s)
        return time.process_time() + children_s, rss_bytes

    def refresh(self) -> None:
        """Read this process's resident memory and its reaped children's CPU time now (a background thread's,
        so that the reads at window boundaries find them fresh and read only the process's CPU clock)."""
        own = self._self
        if own is None or own[0] != procfs.OWN_PID[0]:
            own = self._open_own()
        now_s = time.monotonic()
        self._read_rss(own, now_s)
        self._read_children(now_s)

    def _read_children(self, now_s: float) -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # unlike os.times(), no walk over our threads
        # never less than a read another thread made (each is a lower bound of a time that only grows)
        children_s = max(children.ru_utime + children.ru_stime, self._children[1])
        self._children = (now_s, children_s)
        return children_s

    def _read_rss(self, own: tuple[int, procfs.ProcessStat, procfs.KeptOpen], now_s: float) -> int:
        rss_bytes = int(own[2].read(256).split()[1]) * procfs.page_size()
        self._rss = (now_s, rss_bytes)
        return rss_bytes

    def _own(self) -> procfs.ProcessStat:
        """This process, from its clocks and ``statm`` (``start_ticks`` from one read of its stat)."""
        cpu_s, rss_bytes = self.own_usage()
        own = self._self
        assert own is not None
        return procfs.ProcessStat(os.getppid(), cpu_s, own[1].start_ticks, rss_bytes)

    def _open_own(self) -> tuple[int, procfs.ProcessStat, procfs.KeptOpen]:
        pid = os.getpid()
        own = self._self = (pid, procfs.process_stat(pid), procfs.KeptOpen("/proc/self/statm"))
        self._rss, self._children = (-math.inf, 0), (-math.inf, 0.0)
        return own

    def __reduce__(self) -> tuple[object, ...]:
        return (StatFiles, ())


__all__ = ["RSS_REFRESH_S", "StatFiles"]
