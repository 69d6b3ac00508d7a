"""Whose energy a tracker bills: the scope (``process`` or ``machine``) and this training's processes.

By default (``scope="process"``) a run is billed for what its own process tree used: the GPUs
on which it holds a context, its share of CPU time and of resident memory. ``scope="machine"``
bills whole devices, for dedicated hosts. Meters learn the attribution through
:meth:`~mlflow_green.meters.base.Meter.attribute` before ``open()``; a meter that does not
implement it reports whole devices (``scope="machine"`` on its readings).

The CPU time of a process tree is the user + system time of its live processes plus the time of
the children they have reaped (the kernel adds a reaped child's time to its parent's
``children_user`` / ``children_system``), so a worker that starts and exits inside a window is
billed, and one that exits is not billed twice. The arithmetic that turns these times into a
share of a device's energy is :mod:`mlflow_green.measure.shares`.

Example:
    >>> tree = ProcessTree()
    >>> os.getpid() in tree.pids()
    True
    >>> Attribution("machine").scope
    'machine'
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlflow_green.measure import procfs
from mlflow_green.measure.process_scan import TreeScanner, TreeUsage
from mlflow_green.measure.readings import Scope

_BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "interrupt", "dpc")
_NOT_CAPACITY = ("guest", "guest_nice")  # Linux already counts guest time in user and nice


class ProcessUsage(Protocol):
    """What a meter needs to know about the processes it bills (a :class:`ProcessTree` or a fake)."""

    def cpu_seconds(self) -> float:
        """Cumulative user + system CPU seconds of the processes, reaped children included."""

    def rss_bytes(self) -> int:
        """Resident memory of the processes now, in bytes."""

    def pids(self) -> frozenset[int]:
        """Their PIDs now (GPU meters match them against NVML's running-process lists)."""


@dataclass(frozen=True)
class ProcessTree:
    """This training's processes: a root process and its live descendants, minus excluded ones.

    In distributed training each rank measures its own process tree; a rank that launched the
    others (Lightning's ``ddp`` launcher) excludes them, so no process is billed twice.

    Attributes:
        root_pid: The process whose tree is billed (default: this process).
        exclude_pids: Processes (with their descendants) billed elsewhere, e.g. other DDP ranks.

    Example:
        >>> ProcessTree(exclude_pids=frozenset({os.getpid()})).pids()
        frozenset()
        >>> ProcessTree().cpu_seconds() > 0
        True
    """

    root_pid: int = field(default_factory=os.getpid)
    exclude_pids: frozenset[int] = frozenset()
    _scanner: TreeScanner | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if procfs.LINUX:  # members read between rare full scans (see measure.process_scan)
            object.__setattr__(self, "_scanner", TreeScanner(self.root_pid, self.exclude_pids))

    def usage(self) -> TreeUsage:
        """The tree's PIDs, CPU seconds (reaped children included) and resident memory, in one pass."""
        if self._scanner is not None:
            return self._scanner.read()
        pids = self._walk()
        return TreeUsage(pids, _summed(procfs.process_cpu_s, pids), int(_summed(procfs.rss_bytes, pids)))

    def capture(self) -> tuple[float, int] | None:
        """(CPU seconds, resident bytes) of the tree now if that is cheap (this process alone, nothing
        to look at first), else None."""
        return self._scanner.capture() if self._scanner is not None else None

    def capturer(self) -> Callable[[], tuple[float, int] | None] | None:
        """:meth:`capture` itself, one call shorter (None where the tree is not read from ``/proc``)."""
        return self._scanner.capture if self._scanner is not None else None

    def look(self) -> None:
        """Look for processes created since the last look now (before a last read: none is missed)."""
        if self._scanner is not None:
            self._scanner.look()

    def release(self) -> None:
        """Let go of the reader's thread and descriptors (a tracker stopped; the next read starts over)."""
        if self._scanner is not None:
            self._scanner.release()

    def pids(self) -> frozenset[int]:
        """The PIDs of the tree now (the root and its descendants that are not excluded)."""
        return self.usage().pids if self._scanner is not None else self._walk()

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the live tree plus the children it reaped, since each started."""
        return self.usage().cpu_s

    def rss_bytes(self) -> int:
        """Resident set size of the live tree, summed over its processes (shared pages counted per process)."""
        return self.usage().rss_bytes

    def _walk(self) -> frozenset[int]:
        """The tree found by walking every process's children (where /proc cannot be read directly)."""
        if self.root_pid in self.exclude_pids:
            return frozenset()
        found = {self.root_pid}
        stack = [self.root_pid]
        children = _Children()
        while stack:
            for child in children.of(stack.pop()):
                if child not in found and child not in self.exclude_pids:
                    found.add(child)
                    stack.append(child)
        return frozenset(found)


def _summed(read: Callable[[int], float], pids: Iterable[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += read(pid)
        except (ProcessLookupError, OSError, ValueError):  # exited meanwhile: its parent reaps it
            continue
    return total


class _Children:
    """Direct children of processes: ``/proc/PID/task/*/children`` when the kernel has it, else one
    pass over every process's parent (read once per tree walk)."""

    def __init__(self) -> None:
        self._by_parent: dict[int, list[int]] | None = None

    def of(self, pid: int) -> list[int]:
        task_dir = Path(f"/proc/{pid}/task")
        try:
            tasks = list(task_dir.iterdir())
            if tasks and (tasks[0] / "children").exists():
                return [int(c) for task in tasks for c in _read(task / "children").split()]
        except (OSError, ValueError):
            pass
        if self._by_parent is None:
            try:
                self._by_parent = procfs.children_by_parent()
            except Exception:  # no process table at all: the root alone
                self._by_parent = {}
        return self._by_parent.get(pid, [])


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except OSError:  # the thread exited meanwhile
        return ""


@dataclass(frozen=True)
class Attribution:
    """What a meter should bill: whole devices (``machine``) or this process tree's part (``process``).

    Attributes:
        scope: ``process`` or ``machine``.
        processes: This training's process tree.
        framework_gpus: Asked lazily, the UUIDs (any spelling: ``GPU-…``, ``MIG-…`` or bare) of
            the GPUs the framework says this process uses — the fallback when NVML's process
            lists cannot be matched to this tree's PIDs (containers report host PIDs).

    Example:
        >>> Attribution().scope
        'process'
    """

    scope: Scope = "process"
    processes: ProcessUsage = field(default_factory=ProcessTree)
    framework_gpus: Callable[[], Iterable[str]] | None = None


@dataclass(frozen=True)
class Usage:
    """Cumulative CPU times and current memory at one instant: the inputs of a share.

    Attributes:
        tree_cpu_s: The billed processes' user + system CPU seconds (reaped children included).
        machine_busy_s: CPU seconds the whole machine spent busy (all CPUs; not idle, iowait, steal).
        machine_capacity_s: CPU seconds the machine had (all CPUs, busy or not).
        tree_rss_bytes: The billed processes' resident memory now.
    """

    tree_cpu_s: float
    machine_busy_s: float
    machine_capacity_s: float
    tree_rss_bytes: int = 0


def busy_cpu_s(times: Any) -> float:
    """Machine-wide busy CPU seconds from a ``psutil.cpu_times()`` result (all CPUs summed).

    Busy is user, nice, system, irq and softirq; idle, iowait and steal are not (steal is time a
    hypervisor gave to another machine), and guest time is already inside user.

    Example:
        >>> from collections import namedtuple
        >>> busy_cpu_s(namedtuple("T", "user system idle iowait")(3.0, 1.0, 50.0, 2.0))
        4.0
    """
    return float(sum(getattr(times, name, 0.0) for name in _BUSY_FIELDS))


def capacity_cpu_s(times: Any) -> float:
    """All CPU seconds in a ``psutil.cpu_times()`` result, busy or not (guest time counted once).

    Example:
        >>> from collections import namedtuple
        >>> capacity_cpu_s(namedtuple("T", "user system idle guest")(3.0, 1.0, 50.0, 2.0))
        54.0
    """
    fields = getattr(times, "_fields", ())
    return float(sum(getattr(times, name) for name in fields if name not in _NOT_CAPACITY))


class UsageProbe:
    """Reads :class:`Usage` now: the billed processes' CPU time and memory, and the machine's CPU times.

    Args:
        processes: Whose usage is billed (a :class:`ProcessTree`; a fake in tests).
        cpu_times: The machine's cumulative CPU times (:func:`mlflow_green.measure.procfs.cpu_times`,
            the same as ``psutil.cpu_times``; injectable).
        memory: Whether to read resident memory too (only RAM shares need it).
        machine: Whether to read the machine's CPU times (not needed for a share of capacity
            alone, which is then the CPUs × the elapsed time): 0 for both when False.

    Example:
        >>> usage = UsageProbe(ProcessTree()).read()
        >>> usage.machine_capacity_s >= usage.machine_busy_s > 0
        True
    """

    def __init__(
        self,
        processes: ProcessUsage | None = None,
        cpu_times: Callable[[], Any] = procfs.cpu_times,
        *,
        memory: bool = True,
        machine: bool = True,
    ) -> None:
        self.processes: ProcessUsage = processes if processes is not None else ProcessTree()
        self._cpu_times = cpu_times
        self._memory = memory
        self._machine = machine

    def machine(self) -> tuple[float, float]:
        """(busy, capacity) CPU seconds of the machine so far ((0, 0) when not read)."""
        if not self._machine:
            return 0.0, 0.0
        times = self._cpu_times()
        return busy_cpu_s(times), capacity_cpu_s(times)

    def capturer(self) -> Callable[[], tuple[float, int] | None] | None:
        """What captures the billed processes' usage at a window boundary, cheaply: a callable giving
        (CPU seconds, resident bytes) now, or None when that is not cheap now; None when no capture
        can stand for a read (the machine's times are read too, or the processes cannot be captured).
        :meth:`usage_of` makes a capture the :class:`Usage` a read then would have given."""
        if self._machine:
            return None
        direct = getattr(self.processes, "capturer", None)
        if callable(direct):
            return direct()
        capture = getattr(self.processes, "capture", None)
        return capture if callable(capture) else None

    def usage_of(self, captured: tuple[float, int]) -> Usage:
        """The :class:`Usage` of a capture (see :meth:`capturer`)."""
        cpu_s, rss_bytes = captured  # without the frozen dataclass's __init__: every window boundary makes one
        usage = object.__new__(Usage)
        usage.__dict__.update(tree_cpu_s=float(cpu_s), machine_busy_s=0.0, machine_capacity_s=0.0,
                              tree_rss_bytes=int(rss_bytes) if self._memory else 0)
        return usage

    def read(self) -> Usage:
        """Usage now. Raises whatever the operating system raises (the meter turns it into MeterError)."""
        busy_s, capacity_s = self.machine() if self._machine else (0.0, 0.0)
        both = getattr(self.processes, "usage", None)
        if callable(both):  # one pass over the tree for both figures
            tree = both()
            cpu_s, rss = tree.cpu_s, tree.rss_bytes
        else:
            cpu_s = self.processes.cpu_seconds()
            rss = self.processes.rss_bytes() if self._memory else 0
        return Usage(
            tree_cpu_s=float(cpu_s), machine_busy_s=busy_s, machine_capacity_s=capacity_s,
            tree_rss_bytes=int(rss) if self._memory else 0,
        )
