"""A process with no child is its tree alone: looks and full scans read no ``/proc`` listing then.

Each case runs in a fresh interpreter (a test worker may have children of its own: servers, fixtures)
with the real system calls; only the listing and the children lists are wrapped, to count them.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from mlflow_green.measure import procfs
from mlflow_green.measure.stat_files import StatFiles

pytestmark = pytest.mark.skipif(not hasattr(os, "waitid"), reason="waitid is POSIX")


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_has_children_tells_without_reaping_a_child_that_exited() -> None:
    out = _run("""
        import subprocess, sys, time
        from mlflow_green.measure.own_children import has_children
        print(has_children())
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
        print(has_children())
        deadline = time.monotonic() + 60
        while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":  # exited, not reaped
            assert time.monotonic() < deadline
            time.sleep(0.05)
        print(has_children(), child.wait(), has_children())  # still a child; its status still there for Popen.wait
    """)
    assert out.split() == ["False", "True", "True", "3", "False"]


def test_a_child_of_another_thread_counts() -> None:
    out = _run("""
        import subprocess, sys, threading
        from mlflow_green.measure.own_children import has_children
        box = []
        thread = threading.Thread(target=lambda: box.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])))
        thread.start(); thread.join()
        print(has_children()); box[0].kill(); box[0].wait(); print(has_children())
    """)
    assert out.split() == ["True", "False"]


def test_a_child_with_no_exit_signal_counts_too() -> None:
    """A raw ``clone`` with no exit signal (not ``SIGCHLD``): ``waitid`` sees it only with ``__WALL``."""
    if not (sys.platform.startswith("linux") and platform.machine() == "x86_64"):
        pytest.skip("the clone system call's number is x86_64's")
    out = _run("""
        import ctypes, os, time
        from mlflow_green.measure.own_children import has_children
        pid = ctypes.CDLL(None, use_errno=True).syscall(56, 0, 0, 0, 0, 0)  # clone(flags=0): no exit signal
        if pid == 0:
            time.sleep(1.0)
            os._exit(0)
        print(pid > 0, has_children())
        os.waitid(os.P_PID, pid, os.WEXITED | 0x40000000)  # reaped (__WALL)
        print(has_children())
    """)
    assert out.split() == ["True", "True", "False"]


@pytest.mark.skipif(procfs.last_pid() is None, reason="no ns_last_pid here: every read is a full scan")
def test_a_childless_process_is_looked_at_and_fully_scanned_without_listing_proc() -> None:
    out = _run("""
        import subprocess, sys, threading, time
        from mlflow_green.measure import procfs, process_scan
        from mlflow_green.measure.own_children import has_children
        listings, walks, now = [0], [0], [0.0]
        def listed():
            listings[0] += 1
            return procfs.listed_pids()
        def descendants(pid):
            walks[0] += 1
            return procfs.descendants(pid)
        scanner = process_scan.TreeScanner(clock=lambda: now[0], listed_pids=listed, descendants=descendants,
                                           has_children=has_children, looker=False)
        scanner.read()  # the first read: a full scan, with nothing to walk
        for _ in range(3):
            threads = [threading.Thread(target=time.sleep, args=(0,)) for _ in range(4)]
            [t.start() for t in threads]; [t.join() for t in threads]  # the PID counter moves (threads)
            scanner.look()
        now[0] += process_scan.FULL_RESCAN_S  # a full scan is due
        scanner.read()
        print(listings[0], walks[0])
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        scanner.look()  # a child now: the PIDs handed out are listed, and the child is found
        print(listings[0], child.pid in scanner.read().pids)
        now[0] += process_scan.FULL_RESCAN_S
        print(child.pid in scanner.read().pids, walks[0])  # and the full scan walks the tree
        child.kill(); child.wait()
        before = listings[0]
        scanner.read()
        for _ in range(2):
            moved = procfs.last_pid()
            while procfs.last_pid() == moved:  # the PID counter moves (a thread): a look would list
                threading.Thread(target=time.sleep, args=(0,)).start()
            scanner.look()
        print(listings[0] - before, sorted(scanner.read().pids) == [procfs.own_pid()])
    """)
    assert out.splitlines() == ["0 0", "1 True", "True 1", "0 True"]


def test_the_resident_memory_is_read_again_only_when_older_than_asked() -> None:
    files = StatFiles()
    files.refresh()
    _, rss_before = files.own_usage(rss_max_age_s=600.0)
    grown = bytearray(64 << 20)  # 64 MiB, touched
    grown[:: 4096] = b"\x01" * len(grown[:: 4096])
    _, kept = files.own_usage(rss_max_age_s=600.0)  # refreshed a moment ago: not read again
    _, fresh = files.own_usage(rss_max_age_s=0.0)
    assert kept == rss_before and fresh >= rss_before + (60 << 20)
    files.refresh()  # the looker's refresh: what the next boundary reads
    assert files.own_usage(rss_max_age_s=600.0)[1] >= rss_before + (60 << 20)
    del grown
    files.close()



def test_while_the_looker_runs_the_boundaries_read_no_memory_file_and_the_looker_keeps_it_fresh() -> None:
    """A scanner of this process alone: its captures (a window boundary's read) take only the process's CPU clock;
    the resident memory and the reaped children's time are read by the looker thread, every look."""
    out = _run("""
        import threading, time
        from mlflow_green.measure import process_scan, stat_files

        readers = []

        class Files(stat_files.StatFiles):  # the real files, each memory and children's time read noted with its thread
            def _read_rss(self, own, now_s):
                readers.append(threading.current_thread().name)
                return super()._read_rss(own, now_s)

            def _read_children(self, now_s):
                readers.append(threading.current_thread().name)
                return super()._read_children(now_s)

        scanner = process_scan.TreeScanner(stat=Files(), discovery_interval_s=0.2)
        scanner.read()  # the first read: reads it, starts the looker
        readers.clear()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert scanner.capture() is not None
            time.sleep(0.01)
        scanner.release()
        print(len(readers) >= 10, sorted(set(readers)))
    """)
    assert out == "True ['mlflow-green-process-looker']"


def test_a_reaped_childs_time_reaches_the_boundaries_within_a_look_and_a_full_read_at_once() -> None:
    """A child run and reaped between two looks (``subprocess.run``): its CPU time is in the boundaries' reads once
    the looker looked again, in a full read (a run's end) at once; the reads never go back."""
    out = _run("""
        import subprocess, sys, time
        from mlflow_green.measure import process_scan

        scanner = process_scan.TreeScanner(discovery_interval_s=1.0)
        scanner.read()
        start = scanner.capture()[0]
        subprocess.run([sys.executable, "-c", "import time; t = time.process_time(); exec('while time.process_time() - t < 0.4: pass')"], check=True)
        cpu = []  # the cheap reads (None where the tree is not known alone yet: a look saw the child, a full scan is due)
        deadline = time.monotonic() + 60.0  # a loaded machine: the looks come late
        while time.monotonic() < deadline and (len(cpu) <= 30 or cpu[-1] - start < 0.4):
            usage = scanner.capture()
            if usage is not None:
                cpu.append(usage[0])
            else:  # a look saw the child (a loaded machine: it outlived a look): a full read is due, as a tracker's
                scanner.read()
            time.sleep(0.05)
        full = scanner.read().cpu_s
        scanner.release()
        print(full - start >= 0.4, bool(cpu) and cpu[-1] - start >= 0.4, all(b >= a for a, b in zip(cpu, cpu[1:])), len(cpu) > 30)
    """)
    assert out == "True True True True"
