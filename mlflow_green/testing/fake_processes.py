"""A fake machine for testing process shares: scripted CPU times of the machine and of a process tree.

Pass :meth:`FakeMachine.cpu_times` as a meter's ``cpu_times`` and :attr:`FakeMachine.tree` as the
processes of an :class:`~mlflow_green.measure.attribution.Attribution`; then script what happened.

Example:
    >>> from mlflow_green.measure.attribution import UsageProbe
    >>> machine = FakeMachine(cpus=2)
    >>> probe = UsageProbe(machine.tree, machine.cpu_times)
    >>> machine.advance(10.0, tree_cpu_s=1.0, other_cpu_s=10.0)   # another process hogs one core
    >>> usage = probe.read()
    >>> usage.tree_cpu_s, usage.machine_busy_s, usage.machine_capacity_s
    (1.0, 11.0, 20.0)
"""

from __future__ import annotations

from mlflow_green.measure.procfs import CpuTimes

FakeCpuTimes = CpuTimes
"""The fields ``psutil.cpu_times()`` has on Linux, in seconds summed over all CPUs: the very type
:func:`mlflow_green.measure.procfs.cpu_times` returns, so the fake cannot drift from the real reading."""


class FakeProcessTree:
    """A process tree whose CPU time and resident memory are set by the test.

    Example:
        >>> tree = FakeProcessTree(rss_bytes=2**30)
        >>> tree.cpu_s += 0.5
        >>> tree.cpu_seconds(), tree.rss_bytes()
        (0.5, 1073741824)
    """

    def __init__(self, cpu_s: float = 0.0, rss_bytes: int = 0) -> None:
        self.cpu_s = float(cpu_s)
        self.rss = int(rss_bytes)
        self.fail: BaseException | None = None
        self.alone = True
        """Like a real tree of one process: it can be captured at a window boundary (see :meth:`capture`)."""

    def capture(self) -> tuple[float, int] | None:
        """Its usage now, as a real tree of this process alone gives it to a boundary; None when not
        :attr:`alone` (a real tree with children is read at once) or when reading fails."""
        if not self.alone or self.fail is not None:
            return None
        return self.cpu_s, self.rss

    def cpu_seconds(self) -> float:
        """Cumulative CPU seconds (raises :attr:`fail` if set, like a vanished /proc)."""
        if self.fail is not None:
            raise self.fail
        return self.cpu_s

    def rss_bytes(self) -> int:
        """Resident memory now."""
        return self.rss


class FakeMachine:
    """A machine with ``cpus`` CPUs whose cumulative CPU times advance only when told.

    Args:
        cpus: Logical CPUs (capacity is ``cpus`` CPU-seconds per second).
        rss_bytes: The tree's resident memory.
    """

    def __init__(self, cpus: int = 2, rss_bytes: int = 0) -> None:
        self.cpus = cpus
        self.tree = FakeProcessTree(rss_bytes=rss_bytes)
        self.busy_s = 0.0
        self.idle_s = 0.0
        self.steal_s = 0.0

    def cpu_times(self) -> FakeCpuTimes:
        """What ``psutil.cpu_times()`` would return now (busy time split 3:1 into user and system)."""
        return FakeCpuTimes(
            user=self.busy_s * 0.75, nice=0.0, system=self.busy_s * 0.25, idle=self.idle_s, iowait=0.0,
            irq=0.0, softirq=0.0, steal=self.steal_s, guest=0.0, guest_nice=0.0,
        )

    def advance(self, seconds: float, *, tree_cpu_s: float = 0.0, other_cpu_s: float = 0.0) -> None:
        """``seconds`` pass; the tree uses ``tree_cpu_s`` CPU seconds, other processes ``other_cpu_s``.

        Raises:
            ValueError: if more CPU time is used than the machine has.
        """
        busy_s = tree_cpu_s + other_cpu_s
        capacity_s = self.cpus * seconds
        if busy_s > capacity_s + 1e-9 or min(seconds, tree_cpu_s, other_cpu_s) < 0:
            raise ValueError(f"{busy_s} busy CPU seconds do not fit in {capacity_s} CPU seconds")
        self.tree.cpu_s += tree_cpu_s
        self.busy_s += busy_s
        self.idle_s += capacity_s - busy_s
