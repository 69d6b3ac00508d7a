"""The incremental process-tree reader: the same tree as a full scan, at the cost of reading its members.

Real processes for what the kernel does (children and grandchildren that start and exit between
reads, re-parenting); a scripted process table for what cannot be staged here (PID wrap-around,
a reused PID, ``ns_last_pid`` unreadable).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest

from mlflow_green.measure import procfs
from mlflow_green.measure.attribution import ProcessTree
from mlflow_green.measure.process_scan import DISCOVERY_INTERVAL_S, FULL_RESCAN_S, StatFiles, TreeScanner

SLEEPER = "import sys, time; sys.stdout.write('up\\n'); sys.stdout.flush(); time.sleep(60)"
PARENT_OF_SLEEPER = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "sys.stdout.write(f'{child.pid}\\n'); sys.stdout.flush(); time.sleep(60)\n"
)
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\nprint(time.process_time())"


def _frozen_clock() -> float:
    return 0.0  # no periodic full scan: every read after the first is incremental


def _spawn(code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc


def test_children_and_grandchildren_started_after_the_first_read_are_found_without_a_full_scan() -> None:
    scanner = TreeScanner(clock=_frozen_clock, discovery_interval_s=0.0)
    first = scanner.read()
    assert first.pids == TreeScanner().read().pids  # the first read is a full scan
    parent = _spawn(PARENT_OF_SLEEPER)
    try:
        grandchild = int(parent.stdout.readline())  # type: ignore[union-attr]
        seen = scanner.read()
        assert {parent.pid, grandchild} <= seen.pids
        assert seen.pids == TreeScanner().read().pids  # what a full scan of every process finds
        assert scanner.full_scans == 1
        parent.kill()  # the grandchild is re-parented away from our tree: no longer ours
        parent.wait()
        after = scanner.read()
        assert parent.pid not in after.pids and grandchild not in after.pids
        assert after.pids == TreeScanner().read().pids
    finally:
        parent.kill()
        parent.wait()
        if procfs.pid_exists(grandchild):
            os.kill(grandchild, 9)


def test_cpu_time_of_a_worker_that_starts_and_exits_between_two_reads_is_counted_once() -> None:
    scanner = TreeScanner(clock=_frozen_clock, discovery_interval_s=0.0)
    before = scanner.read().cpu_s
    child = _spawn(BURN.format(s=0.3))
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:  # read while it runs: its time so far is in this read
        during = scanner.read()
        if child.pid in during.pids and during.cpu_s - before >= 0.1:
            break
        time.sleep(0.02)
    assert child.pid in during.pids
    child_cpu_s = float(child.communicate()[0])  # reaped: its time moves into our children time
    after = scanner.read()
    assert child.pid not in after.pids
    assert after.cpu_s - before == pytest.approx(child_cpu_s, abs=0.15)
    assert scanner.full_scans == 1


def test_process_tree_reads_only_its_members_between_full_scans() -> None:
    tree = ProcessTree()
    sleeper = _spawn(SLEEPER)
    try:
        sleeper.stdout.readline()  # type: ignore[union-attr]
        usage = tree.usage()
        assert sleeper.pid in usage.pids and usage.pids == TreeScanner().read().pids
        assert usage.rss_bytes == pytest.approx(sum(procfs.rss_bytes(pid) for pid in usage.pids), rel=0.05)  # stat vs statm
        assert tree.cpu_seconds() >= usage.cpu_s and tree.rss_bytes() > 0 and tree.pids() == usage.pids
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sleeper.pid not in tree.pids()


# -- a scripted process table -----------------------------------------------------------------
@dataclass
class ProcTable:
    """Processes (pid -> parent, CPU seconds), the last PID handed out, and what was read."""

    parents: dict[int, int] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)
    last: int | None = 0
    listings: int = 0
    stats: list[int] = field(default_factory=list)

    def spawn(self, pid: int, parent: int, cpu_s: float = 1.0) -> None:
        self.parents[pid], self.cpu[pid] = parent, cpu_s
        self.last = pid

    def exit(self, pid: int, reaped_by: int | None = None) -> None:
        if reaped_by is not None:
            self.cpu[reaped_by] += self.cpu[pid]
        del self.parents[pid], self.cpu[pid]
        for child, parent in self.parents.items():
            if parent == pid:
                self.parents[child] = 1  # re-parented to init

    def last_pid(self) -> int | None:
        return self.last

    def listed(self) -> list[int]:
        self.listings += 1
        return sorted(self.parents)

    def stat(self, pid: int) -> procfs.ProcessStat:
        self.stats.append(pid)
        if pid not in self.parents:
            raise ProcessLookupError(pid)
        return procfs.ProcessStat(self.parents[pid], self.cpu[pid], 0, 4096)

    def scanner(self, root: int, exclude: frozenset[int] = frozenset(), clock: object = _frozen_clock,
                discovery_interval_s: float = 0.0, looker: bool = False) -> TreeScanner:
        return TreeScanner(root, exclude, clock=clock, last_pid=self.last_pid, listed_pids=self.listed, stat=self.stat,  # type: ignore[arg-type]
                           discovery_interval_s=discovery_interval_s, looker=looker)


def _machine() -> ProcTable:
    table = ProcTable()
    table.spawn(1, 0)
    for pid in range(2, 60):
        table.spawn(pid, 1)  # 58 other processes
    table.spawn(100, 1, cpu_s=5.0)  # the training
    return table


def test_nothing_created_since_the_last_read_means_no_listing_and_one_stat_per_member() -> None:
    table = _machine()
    table.spawn(101, 100, cpu_s=2.0)
    scanner = table.scanner(100)
    assert scanner.read().cpu_s == 7.0
    table.listings, table.stats = 0, []
    table.cpu[100] += 1.0
    usage = scanner.read()
    assert usage.pids == {100, 101} and usage.cpu_s == 8.0
    assert table.listings == 0 and sorted(table.stats) == [100, 101]


def test_new_processes_are_found_among_pids_above_the_last_one_and_only_those_are_read() -> None:
    table = _machine()
    scanner = table.scanner(100)
    scanner.read()
    table.spawn(150, 1)  # someone else's
    table.spawn(151, 100, cpu_s=0.5)  # ours
    table.spawn(152, 151, cpu_s=0.25)  # ours, a grandchild
    table.stats = []
    usage = scanner.read()
    assert usage.pids == {100, 151, 152} and usage.cpu_s == 5.75
    assert sorted(table.stats) == [100, 150, 151, 152]


def test_after_the_pids_wrap_low_new_pids_are_found_too() -> None:
    table = _machine()
    table.last = 32_000
    scanner = table.scanner(100)
    scanner.read()
    table.spawn(32_700, 1)
    table.spawn(70, 100, cpu_s=0.5)  # wrapped past pid_max: a low PID
    assert scanner.read().pids == {100, 70}


def test_processes_older_than_the_last_wrap_are_not_read_by_a_look_whenever_the_counter_moves() -> None:
    """After the PIDs wrapped, the machine's long-lived processes (kernel workers, daemons) keep PIDs
    above the counter: they are not new, and a look (every second, whenever anything started) does
    not read them; what was handed out since the last look is read, and ours found."""
    table = _machine()
    for pid in range(30_000, 30_008):
        table.spawn(pid, 2)  # started before the wrap
    table.last = 200  # the counter wrapped since
    scanner = table.scanner(100, discovery_interval_s=DISCOVERY_INTERVAL_S, looker=False)
    scanner.read()
    for _ in range(3):
        table.spawn(table.last + 1, 1)  # someone else's process: the counter moves
        table.stats = []
        scanner.look()
        assert table.stats == [table.last]  # the new one alone, none of the old ones
    table.spawn(table.last + 1, 100, cpu_s=0.5)
    scanner.look()
    assert scanner.read().pids == {100, table.last}


def test_a_reused_pid_and_a_re_parented_process_are_told_apart_by_their_parent() -> None:
    table = _machine()
    table.spawn(101, 100)
    table.spawn(102, 101)
    scanner = table.scanner(100)
    assert scanner.read().pids == {100, 101, 102}
    table.exit(101, reaped_by=100)  # 102 is re-parented to init: no longer ours
    table.spawn(103, 1)
    assert scanner.read().pids == {100}
    table.exit(103)
    table.parents[101], table.cpu[101] = 1, 9.0  # PID 101 reused by someone else's process
    table.spawn(104, 1)
    assert scanner.read().pids == {100}


def test_excluded_processes_and_their_descendants_are_left_out() -> None:
    table = _machine()
    scanner = table.scanner(100, exclude=frozenset({101}))
    scanner.read()
    table.spawn(101, 100)
    table.spawn(102, 101)
    table.spawn(103, 100, cpu_s=0.5)
    assert scanner.read().pids == {100, 103}


def test_full_scans_happen_first_periodically_and_whenever_the_last_pid_is_unknown() -> None:
    table = _machine()
    now = [0.0]
    scanner = table.scanner(100, clock=lambda: now[0])
    scanner.read(), scanner.read()
    assert scanner.full_scans == 1
    table.parents[50] = 100  # adopted by a sub-reaper in the tree: no new PID shows it
    assert 50 not in scanner.read().pids
    now[0] = FULL_RESCAN_S
    assert 50 in scanner.read().pids and scanner.full_scans == 2
    table.last = None  # ns_last_pid cannot be read: every read scans
    scanner.read(), scanner.read()
    assert scanner.full_scans == 4


def test_new_processes_are_found_by_a_look_not_by_reads_and_billed_in_full_when_found() -> None:
    """Reads read the members only (no ns_last_pid, no listing); a look (the looker thread's, every
    DISCOVERY_INTERVAL_S) finds new processes for the next read, which bills a late-found worker all
    of its CPU time: the tree's total is the same as with a look at every read."""
    table = _machine()
    scanner = table.scanner(100, discovery_interval_s=DISCOVERY_INTERVAL_S, looker=False)
    assert scanner.read().cpu_s == 5.0
    table.spawn(101, 100, cpu_s=0.0)  # a worker starts just after a read
    table.listings, table.stats = 0, []
    table.cpu[101] = 0.75
    early = scanner.read()
    assert early.pids == {100} and early.cpu_s == 5.0 and table.listings == 0 and table.stats == [100]
    scanner.look()
    assert table.listings == 1
    table.cpu[101] = 1.5
    found = scanner.read()
    assert found.pids == {100, 101} and found.cpu_s == 6.5  # all of its time, none lost
    table.exit(101, reaped_by=100)  # gone before the next look: in our reaped-children time
    assert scanner.read().cpu_s == 6.5 and table.listings == 1


def test_a_look_keeps_only_processes_born_in_the_tree_so_the_next_read_reads_no_stranger() -> None:
    """Processes started elsewhere on the machine (most of what moves ``ns_last_pid`` on a shared
    host) are checked by the look, in the background, and never read again at a window boundary."""
    table = _machine()
    scanner = table.scanner(100, discovery_interval_s=DISCOVERY_INTERVAL_S, looker=False)
    scanner.read()
    for pid in range(150, 160):
        table.spawn(pid, 1)  # someone else's
    scanner.look()
    table.stats = []
    assert scanner.read().pids == {100} and table.stats == [100]  # no stranger read at the boundary
    table.spawn(160, 1)
    table.spawn(161, 100, cpu_s=0.5)  # ours
    table.spawn(162, 161, cpu_s=0.25)  # ours, a grandchild born before the look
    scanner.look()
    table.stats = []
    usage = scanner.read()
    assert usage.pids == {100, 161, 162} and usage.cpu_s == 5.75
    assert sorted(table.stats) == [100, 161, 162]


def test_the_looker_thread_finds_a_new_child_within_a_few_intervals_and_stops_when_reads_stop() -> None:
    interval_s = DISCOVERY_INTERVAL_S / 4  # the real looker, at a quarter of its interval (it ends after ten idle ones)
    scanner = TreeScanner(discovery_interval_s=interval_s)
    scanner.read()
    sleeper = _spawn(SLEEPER)
    try:
        sleeper.stdout.readline()  # type: ignore[union-attr]
        deadline = time.monotonic() + 5 * interval_s + 5.0
        while sleeper.pid not in scanner.read().pids:
            assert time.monotonic() < deadline, "the looker never found the child"
            time.sleep(0.05)
        assert scanner.full_scans == 1  # found by looks, not by another full scan
    finally:
        sleeper.kill()
        sleeper.wait()
    looker = scanner._looker
    assert looker is not None
    looker.join(timeout=12 * interval_s + 5.0)  # no reads: it ends by itself
    assert not looker.is_alive() and scanner._looker is None


def test_stat_files_keep_one_descriptor_per_member_and_tell_a_reaped_process() -> None:
    files = StatFiles()
    sleeper = _spawn(SLEEPER)
    try:
        sleeper.stdout.readline()  # type: ignore[union-attr]
        assert files(sleeper.pid).ppid == os.getpid() and files(os.getpid()).ppid == os.getppid()
        assert len(files) == 1  # this process is read from its clocks, not a kept stat file
        sleeper.kill()
        sleeper.wait()
        with pytest.raises(ProcessLookupError):
            files(sleeper.pid)
        assert len(files) == 0
        files.retain(())
        assert len(files) == 0
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_copy_starts_over_with_a_full_scan() -> None:
    import copy
    import pickle

    tree = ProcessTree(exclude_pids=frozenset({12345}))
    assert pickle.loads(pickle.dumps(tree)) == tree == copy.deepcopy(tree)
    clone = pickle.loads(pickle.dumps(tree))
    assert clone.pids() == tree.pids() and clone._scanner is not tree._scanner


def test_this_process_is_read_from_its_clocks_with_the_same_figures_as_its_stat() -> None:
    files = StatFiles()
    before = procfs.process_stat(os.getpid())
    own = files(os.getpid())
    after = procfs.process_stat(os.getpid())
    assert own.ppid == before.ppid and own.start_ticks == before.start_ticks
    tick_s = 1.0 / os.sysconf("SC_CLK_TCK")
    # stat truncates to clock ticks our user and system times and our reaped children's (4 ticks at most);
    # the clocks read them to the nanosecond
    assert before.cpu_s - 2 * tick_s <= own.cpu_s <= after.cpu_s + 4 * tick_s
    assert own.rss_bytes == pytest.approx(after.rss_bytes, rel=0.05)
    child = _spawn(BURN.format(s=0.2))
    child_cpu_s = float(child.communicate()[0])  # reaped: its time is in ours now
    assert files(os.getpid()).cpu_s - own.cpu_s >= child_cpu_s - 2 * tick_s


def test_a_forked_child_reads_its_own_clocks_not_its_parents() -> None:
    """This process's PID is kept without a system call (a window boundary asks it): a forked child must
    see its own, or its reads would be its parent's figures from the parent's descriptors."""
    files = StatFiles()
    files(os.getpid())  # the parent's own reader is open before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: burn CPU of its own, then report its PID as seen and its CPU as read
        try:
            deadline = time.process_time() + 0.2
            while time.process_time() < deadline:
                pass
            os.write(write, f"{procfs.own_pid()} {os.getpid()} {files(os.getpid()).cpu_s}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        seen_pid, real_pid, child_cpu_s = answer.read().split()
    os.waitpid(pid, 0)
    assert int(seen_pid) == int(real_pid) == pid != procfs.own_pid() == os.getpid()
    assert 0.15 <= float(child_cpu_s) < time.process_time()  # its own CPU time, not the parent's


def _tree_by_parents(root: int) -> set[int]:
    children = procfs.children_by_parent()
    found, stack = {root}, [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def test_a_full_scan_by_children_lists_finds_the_tree_every_parent_shows() -> None:
    """Children forked by another thread than the main one, and grandchildren, are in the kernel's
    children lists of the thread that made them: the walk reads every thread's list."""
    started: list[subprocess.Popen[str]] = []
    spawned, done = threading.Event(), threading.Event()

    def spawn() -> None:
        started.append(subprocess.Popen([sys.executable, "-c", PARENT_OF_SLEEPER], stdout=subprocess.PIPE, text=True))

    def spawn_and_stay() -> None:  # alive while the tree is read: its child is in its own list
        spawn()
        spawned.set()
        done.wait(60)

    worker = threading.Thread(target=spawn_and_stay)
    worker.start()
    assert spawned.wait(60)
    spawn()  # and one from the main thread
    grandchildren: set[int] = set()
    try:
        grandchildren = {int(p.stdout.readline()) for p in started}  # type: ignore[union-attr]
        expected = _tree_by_parents(os.getpid())
        assert {p.pid for p in started} | grandchildren <= expected
        assert {os.getpid(), *procfs.descendants(os.getpid())} == expected
        scanner = TreeScanner()
        assert scanner.read().pids == expected and scanner.full_scans == 1
    finally:
        done.set()
        worker.join()
        for p in started:
            p.kill()
            p.wait()
        for pid in grandchildren:
            if procfs.pid_exists(pid):
                os.kill(pid, 9)


def test_where_the_kernel_keeps_no_children_lists_a_full_scan_reads_every_process() -> None:
    def no_lists(pid: int) -> list[int]:
        raise OSError("no children lists")

    scanner = TreeScanner(descendants=no_lists)
    assert scanner.read().pids == _tree_by_parents(os.getpid())


CHEAP_CAPTURE = """
import json, subprocess, sys
from mlflow_green.measure.process_scan import FULL_RESCAN_S, TreeScanner
now = [0.0]
scanner = TreeScanner(clock=lambda: now[0], discovery_interval_s=60.0)  # a looker that never looks by itself here
seen = {"before any read": scanner.capture()}
scanner.read()
seen["alone"] = scanner.capture()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
scanner.look()
seen["a look found a child"] = scanner.capture()
seen["child read"] = child.pid in scanner.read().pids
seen["with the child"] = scanner.capture()
child.kill(); child.wait()
scanner.read()
seen["alone again"] = scanner.capture()
now[0] = FULL_RESCAN_S + 1.0
seen["full scan due"] = scanner.capture()
scanner.read()
seen["after the full scan"] = scanner.capture()
scanner.release()
seen["released"] = scanner.capture()
print(json.dumps(seen))
"""


def test_a_boundary_capture_reads_this_process_clocks_only_while_nothing_else_needs_reading() -> None:
    """The window boundary's capture: this process's CPU time and memory, from its clocks, while the tree is
    this process alone; None (a full read instead) before the first read, once a look found a child, while
    the child lives, when a full scan is due, and once released. (A fresh interpreter: no children of pytest's.)"""
    out = subprocess.run([sys.executable, "-c", CHEAP_CAPTURE], capture_output=True, text=True, timeout=120, check=True)
    seen = __import__("json").loads(out.stdout)
    for cheap in ("alone", "alone again", "after the full scan"):
        cpu_s, rss_bytes = seen[cheap]
        assert cpu_s > 0 and rss_bytes > 1_000_000, (cheap, seen)
    assert seen["alone again"][0] >= seen["alone"][0]
    assert seen["child read"] is True
    for read_instead in ("before any read", "a look found a child", "with the child", "full scan due", "released"):
        assert seen[read_instead] is None, (read_instead, seen)
