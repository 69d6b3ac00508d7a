"""A process tree read incrementally from Linux ``/proc``: only its members between rare full scans.

Finding a process's descendants takes the kernel's children lists of each of its threads (and
theirs), or where it keeps none every process's parent — the ``stat`` file of every process on
the machine (about 1 ms for 130 processes, ten times more on a busy host). A meter reads the tree
at every window boundary, so :class:`TreeScanner` remembers the tree and, at each read, reads only:

- the ``stat`` of the processes that were in the tree at the last read (their CPU time, memory
  and parent: one small read each), and
- the ``stat`` of the processes created since the last read (by the order of PIDs, see
  :mod:`~mlflow_green.measure.pid_order`) whose parent is in the tree (or among them).

New processes are looked for every :data:`DISCOVERY_INTERVAL_S` seconds by a small background
thread (the *looker*, alive while reads keep coming), not by the reads: threads count as PIDs too,
so on a busy machine ``ns_last_pid`` moves between almost any two reads, and a listing of ``/proc``
costs more than everything else a read does. While the root is this process and has no child (one
``waitid`` call, :mod:`~mlflow_green.measure.own_children`), the tree is itself alone: the look lists
nothing. What it finds is read at the next read. A worker found
up to that much later is billed all the same: its CPU time is cumulative since it started, so it
lands in the window where it is found; one that starts and exits unseen is in its parent's
reaped-children time. Members are read through descriptors kept open (one ``pread`` each, see
:class:`StatFiles`).

Membership is then worked out from the parents just read, exactly as a full walk would: the root,
and every process whose parent is in the tree, minus excluded processes and their descendants. A
worker started since the last read is found at this read; one that exited is gone from the tree
and its CPU time is in its parent's reaped-children time; a process re-parented away from the tree
(its parent in the tree exited) leaves it. A full scan is made at the first read, every
:data:`FULL_RESCAN_S` seconds, and at every read where ``ns_last_pid`` cannot be read: it catches
what the PID order cannot show (a process adopted by a sub-reaper in the tree, or more than
``pid_max`` processes created between two reads). A full scan reads the kernel's children lists
(``/proc/PID/task/TID/children``: the tree itself) where it keeps them, else every process's ``stat``
— nothing where the root is this process with no child.

Example:
    >>> scanner = TreeScanner()
    >>> usage = scanner.read()
    >>> os.getpid() in usage.pids and usage.cpu_s > 0 and usage.rss_bytes > 0
    True
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mlflow_green.measure import own_children, procfs
from mlflow_green.measure.pid_order import created_since
from mlflow_green.measure.stat_files import RSS_REFRESH_S, StatFiles
from mlflow_green.measure.tree_members import tree_members

FULL_RESCAN_S = 30.0
"""Seconds between two full scans of every process's parent."""

DISCOVERY_INTERVAL_S = 2.0
"""Seconds between two looks for new processes (and refreshes of this process's resident memory)."""


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
        stat: One process's stat (raises ``ProcessLookupError`` / ``OSError`` when it cannot be read;
            default: :class:`StatFiles`, one descriptor kept open per member). If it has a
            ``retain(pids)`` method, it is told the members after each read.
        discovery_interval_s: Seconds between two looks for new processes (0: at every read).
        looker: Look in a background thread (else only when :meth:`look` is called, or at every
            read with ``discovery_interval_s=0``).
        descendants: A process's descendants now, for the full scans (raises ``OSError`` when it
            cannot tell); default: the kernel's children lists when ``listed_pids`` is the real
            listing, else None (every full scan reads every listed process).
        has_children: Whether this process has a child now (None: cannot tell); default with the real listing:
            one ``waitid`` call. A root that is this process and has none is its tree alone: no listing, no scan.

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
        stat: Callable[[int], procfs.ProcessStat] | None = None,
        discovery_interval_s: float = DISCOVERY_INTERVAL_S,
        looker: bool = True,
        descendants: Callable[[int], Iterable[int]] | None = None,
        has_children: Callable[[], bool | None] | None = None,
    ) -> None:
        self.root_pid = os.getpid() if root_pid is None else int(root_pid)
        self.exclude_pids = frozenset(exclude_pids)
        self._clock = clock
        self._last_pid_of = last_pid
        self._listed = listed_pids
        if descendants is None and listed_pids is procfs.listed_pids:
            descendants = procfs.descendants
        self._descendants = descendants
        if has_children is None and listed_pids is procfs.listed_pids:
            has_children = own_children.has_children
        self._has_children = has_children
        self._stat = stat if stat is not None else StatFiles()
        self._peek = stat if stat is not None else procfs.process_stat  # a look's reads keep no descriptor
        self._own_usage: Callable[..., tuple[float, int]] | None = getattr(self._stat, "own_usage", None)
        self._refresh: Callable[[], None] | None = getattr(self._stat, "refresh", None)  # by the looker
        self._rss_age_s = min(max(RSS_REFRESH_S, 2.5 * float(discovery_interval_s)), 5.0)  # read if the looker lags
        self._discovery_interval_s = float(discovery_interval_s)
        self._use_looker = looker and self._discovery_interval_s > 0
        self._looker: threading.Thread | None = None
        self._looker_stop = threading.Event()
        self._read_at_s = -math.inf  # time.monotonic() of the last read (keeps the looker alive)
        self._found: set[int] = set()  # found by a look, read at the next read
        self._lock = threading.Lock()
        self._members: frozenset[int] = frozenset()
        self._alone = False  # the members are the root alone
        self._looking_later = self._discovery_interval_s > 0  # new processes are looked for between reads
        self._last_pid: int | None = None
        self._full_at_s = -math.inf
        self._cheap_until_s = -math.inf  # see _note_cheap
        self.full_scans = 0
        """How many full scans were made (for tests and benchmarks)."""

    def __reduce__(self) -> tuple[object, ...]:
        return (TreeScanner, (self.root_pid, self.exclude_pids))

    def read(self) -> TreeUsage:
        """The tree now, with its CPU time and memory (raises ``OSError`` if ``/proc`` cannot be listed)."""
        with self._lock:
            now_s = self._clock()
            self._read_at_s = time.monotonic()
            alone = self._alone_usage(now_s)  # the usual case, first: this process alone, no look or scan due
            if alone is not None:
                return TreeUsage(self._members, alone[0], alone[1])
            full_due = self._last_pid is None or now_s - self._full_at_s >= FULL_RESCAN_S
            looking = full_due or self._discovery_interval_s <= 0
            last_pid = self._last_pid_of() if looking else self._last_pid
            if full_due or last_pid is None:  # ns_last_pid unreadable: every read scans
                candidates: Iterable[int] = () if self._childless() else self._every_candidate()
                self._full_at_s, self.full_scans = now_s, self.full_scans + 1
            elif looking:  # look at every read
                candidates = self._members.union(self._created(last_pid))
            else:  # the members, and what the last looks found
                candidates = self._members.union(self._found)
            self._found = set()
            stats = self._stats({self.root_pid, *candidates})
            members = tree_members({pid: stat.ppid for pid, stat in stats.items()}, self.root_pid, self.exclude_pids)
            self._members, self._last_pid = members, last_pid
            self._alone = members == {self.root_pid}
            retain = getattr(self._stat, "retain", None)
            if callable(retain):
                retain(members)
            self._ensure_looker()
            self._note_cheap()
        alive = [stats[pid] for pid in members if pid in stats]
        return TreeUsage(members, sum(s.cpu_s for s in alive), sum(s.rss_bytes for s in alive))

    def capture(self) -> tuple[float, int] | None:
        """(CPU seconds, resident bytes) of the tree now from this process's clocks if it is the tree alone, else None."""
        with self._lock:
            now_s = self._clock()
            monotonic = self._clock is time.monotonic
            if now_s < self._cheap_until_s and self.root_pid == procfs.OWN_PID[0]:  # nothing else to check
                try:  # the looker keeps memory and children fresh: only the CPU clock is read here
                    usage = self._own_usage(now_s if monotonic else None, self._rss_age_s, self._rss_age_s)  # type: ignore[misc]
                except OSError:
                    return None
            else:
                usage = self._alone_usage(now_s)
            if usage is not None:
                self._read_at_s = now_s if monotonic else time.monotonic()
            return usage

    def _alone_usage(self, now_s: float) -> tuple[float, int] | None:
        """(CPU seconds, resident bytes) of the root when it is the tree alone and no look is due (under the lock)."""
        if not (self._alone and self._last_pid is not None and not self._found and self._looking_later
                and now_s - self._full_at_s < FULL_RESCAN_S):
            return None
        try:
            own = self._own_usage
            if own is not None and self.root_pid == procfs.OWN_PID[0]:
                usage = own()
            else:
                root = self._stat(self.root_pid)
                usage = (root.cpu_s, root.rss_bytes)
        except (ProcessLookupError, OSError):
            return None
        if self._looker is None:
            self._ensure_looker()
            self._note_cheap()
        return usage

    def _note_cheap(self) -> None:
        """Until when :meth:`capture` may read this process's clocks, checking nothing else (under the lock; called
        wherever it changes): the tree is this process alone, no look found any, the looker runs, no full scan due."""
        cheap = (self._alone and self._last_pid is not None and not self._found and self._looking_later
                 and self._own_usage is not None and self._looker is not None)
        self._cheap_until_s = self._full_at_s + FULL_RESCAN_S if cheap else -math.inf

    def _ensure_looker(self) -> None:
        """Start the looker thread if it should run and does not (under the lock)."""
        if self._use_looker and self._looker is None:
            self._looker_stop = threading.Event()
            self._looker = threading.Thread(target=self._keep_looking, args=(self._looker_stop,),
                                            name="mlflow-green-process-looker", daemon=True)
            self._looker.start()

    def release(self) -> None:
        """Stop the looker thread and close the kept descriptors now (a tracker stopped; a later read
        starts over with a full scan)."""
        with self._lock:
            self._looker_stop.set()
            self._looker = None
            self._last_pid, self._members, self._found = None, frozenset(), set()
            self._alone = False
            self._cheap_until_s = -math.inf
            getattr(self._stat, "close", lambda: None)()  # the kept descriptors

    def look(self) -> None:
        """Look for processes created since the last look; the next :meth:`read` reads them."""
        if self._alone and not self._found and self._childless():  # the tree stays this process alone
            return  # (the PIDs handed out meanwhile are looked at once it has a child, or by the next full scan)
        last_pid = self._last_pid_of()
        with self._lock:
            previous = self._last_pid
            if last_pid is None:  # cannot tell what is new: the next read scans every process
                self._last_pid = None
        if last_pid is None or previous is None or last_pid == previous:
            return
        new = created_since(self._listed(), previous, last_pid)  # listed outside the lock: reads go on
        with self._lock:
            tree = set(self._members) | self._found
        ours = self._born_in(tree, new, previous)
        with self._lock:
            if self._last_pid == previous:  # a full scan meanwhile saw everything up to its own last PID
                self._found.update(ours)
                self._last_pid = last_pid
                self._note_cheap()

    def _born_in(self, tree: set[int], new: list[int], previous: int) -> list[int]:
        """The processes among ``new`` whose parent is in ``tree`` or among them (oldest first): the
        others — created elsewhere on the machine — are no business of the next read (it stays cheap)."""
        ours = []
        for pid in sorted(new, key=lambda p: (p <= previous, p)):  # handed-out order, across a wrap
            try:
                parent = self._peek(pid).ppid
            except (ProcessLookupError, OSError):  # exited meanwhile: its parent reaps its time
                continue
            if parent in tree:
                tree.add(pid)
                ours.append(pid)
        return ours

    def _childless(self) -> bool:
        """True if the root is this process and it has no child now: its tree is itself alone (one system call)."""
        return self._has_children is not None and self.root_pid == procfs.OWN_PID[0] and self._has_children() is False

    def _every_candidate(self) -> Iterable[int]:
        """A full scan's candidates: the root's descendants by the kernel's children lists where it
        keeps them (the tree exactly, whatever the PID order), else every listed process."""
        if self._descendants is not None:
            try:
                return self._descendants(self.root_pid)
            except OSError:  # no children lists here (or the root is gone): list every process
                self._descendants = None
        return self._listed()

    def _created(self, last_pid: int) -> list[int]:
        """PIDs that may be new since the last look, looking now (under the lock)."""
        if self._last_pid is None or last_pid == self._last_pid:
            return []
        return created_since(self._listed(), self._last_pid, last_pid)

    def _keep_looking(self, stop: threading.Event) -> None:
        """The looker: a look every interval while reads keep coming (ends at :meth:`release`, or after
        ten intervals without a read)."""
        while not stop.wait(self._discovery_interval_s):
            with self._lock:
                if time.monotonic() - self._read_at_s > 10 * self._discovery_interval_s:
                    if self._looker is threading.current_thread():
                        self._looker, self._cheap_until_s = None, -math.inf
                    return
            with contextlib.suppress(Exception):  # /proc unreadable now: the next full scan catches up
                self.look()
            with self._lock:  # this process's memory and children's time, fresh for the boundaries (never after release)
                if self._refresh is not None and self._alone and self.root_pid == procfs.OWN_PID[0] and not stop.is_set():
                    with contextlib.suppress(OSError):
                        self._refresh()

    def _stats(self, pids: Iterable[int]) -> dict[int, procfs.ProcessStat]:
        found = {}
        for pid in pids:
            try:
                found[pid] = self._stat(pid)
            except (ProcessLookupError, OSError):  # exited meanwhile: its parent reaps it (and its time)
                continue
        return found


def linux_scanner_available() -> bool:
    """True where ``/proc`` gives every process's parent (Linux)."""
    return procfs.LINUX


__all__ = ["DISCOVERY_INTERVAL_S", "FULL_RESCAN_S", "RSS_REFRESH_S", "StatFiles", "TreeScanner", "TreeUsage", "linux_scanner_available"]
