"""The arithmetic of process shares: which part of a device's energy a process tree is billed.

Over an interval, the tree used ``Δtree`` CPU seconds while the machine was busy ``Δbusy`` CPU
seconds out of a capacity of ``Δcapacity`` (all CPUs × elapsed time). A CPU package's energy
has two parts:

* its **idle floor** (the power it draws with nothing running, ``floor_w × Δt``) is the cost of
  the capacity being there; the tree pays it in proportion to the capacity it occupied,
  ``Δtree / Δcapacity``;
* the **energy above the floor** is caused by busy CPUs; the tree pays the share of the busy
  time it spent, ``Δtree / Δbusy``.

So a process alone on an idle machine is not billed the whole package, and a nearly idle process
beside a CPU hog is not billed the hog's energy: what it pays depends on its own CPU time, not on
what else runs. An idle machine (``Δbusy = 0``) has no energy above the floor to share.
Resident memory is shared the same way: a RAM's energy × the tree's share of the machine's RAM.

Example:
    >>> d = UsageDelta(tree_cpu_s=1.0, busy_s=2.0, capacity_s=20.0, duration_s=10.0)
    >>> busy_share(d), capacity_share(d)
    (0.5, 0.05)
    >>> split_package(energy_j=300.0, duration_s=10.0, floor_w=20.0, usage=d)  # 200 J floor, 100 J above
    60.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlflow_green.measure.attribution import Usage

MIN_FLOOR_INTERVAL_S = 0.5
"""Intervals shorter than this do not teach the idle floor (counter ticks make them noisy)."""


def _clamp01(value: float) -> float:
    return 0.0 if math.isnan(value) else min(max(value, 0.0), 1.0)


@dataclass(frozen=True)
class UsageDelta:
    """What the billed processes and the machine did over one interval.

    Attributes:
        tree_cpu_s: CPU seconds the tree used.
        busy_s: CPU seconds the machine was busy (the tree's included).
        capacity_s: CPU seconds the machine had (CPUs × elapsed time).
        duration_s: Elapsed time.
        rss_bytes: The tree's mean resident memory over the interval.
    """

    tree_cpu_s: float
    busy_s: float
    capacity_s: float
    duration_s: float
    rss_bytes: float = 0.0

    @classmethod
    def between(cls, before: Usage, after: Usage, duration_s: float) -> UsageDelta:
        """The interval between two :class:`Usage` readings (negative jitter clamped to 0)."""
        return cls(
            tree_cpu_s=max(after.tree_cpu_s - before.tree_cpu_s, 0.0),
            busy_s=max(after.machine_busy_s - before.machine_busy_s, 0.0),
            capacity_s=max(after.machine_capacity_s - before.machine_capacity_s, 0.0),
            duration_s=max(duration_s, 0.0),
            rss_bytes=(before.tree_rss_bytes + after.tree_rss_bytes) / 2.0,
        )

    @property
    def machine_load(self) -> float:
        """The machine's utilisation over the interval, 0–1 (``busy / capacity``)."""
        return _clamp01(self.busy_s / self.capacity_s) if self.capacity_s > 0 else 0.0


def busy_share(usage: UsageDelta) -> float:
    """The tree's share of the machine's busy CPU time, 0–1.

    The kernel counts machine and process times in separate ticks, so the tree can appear to
    use more than the machine did in a short interval: the share is capped at 1. With no busy
    time at all (an idle machine), a tree that used CPU time is billed all of it, else none.
    """
    if usage.busy_s <= 0:
        return 1.0 if usage.tree_cpu_s > 0 else 0.0
    return _clamp01(usage.tree_cpu_s / usage.busy_s)


def capacity_share(usage: UsageDelta, cpus: int = 0) -> float:
    """The tree's share of the machine's CPU capacity (all CPUs × elapsed time), 0–1.

    When the machine's CPU times did not advance (a frozen or faked clock), ``cpus × duration``
    stands in for the capacity.
    """
    return share_of_capacity(usage.tree_cpu_s, usage.capacity_s, usage.duration_s, cpus)


def share_of_capacity(tree_cpu_s: float, capacity_s: float, duration_s: float, cpus: int) -> float:
    """:func:`capacity_share` on plain numbers (``capacity_s`` 0: ``cpus × duration_s`` stands in).

    Example:
        >>> share_of_capacity(1.0, 0.0, 10.0, 2)
        0.05
    """
    if capacity_s <= 0:
        capacity_s = cpus * duration_s
    return _clamp01(tree_cpu_s / capacity_s) if capacity_s > 0 else 0.0


def memory_share(rss_bytes: float, total_bytes: float) -> float:
    """The tree's share of the machine's memory, 0–1 (0 when the total is unknown).

    Example:
        >>> memory_share(2 * 2**30, 8 * 2**30)
        0.25
    """
    return _clamp01(rss_bytes / total_bytes) if total_bytes > 0 else 0.0


def split_package(energy_j: float, duration_s: float, floor_w: float, usage: UsageDelta) -> float:
    """The tree's part of a CPU package's energy over one interval (see the module docstring)."""
    if energy_j <= 0:
        return 0.0
    floor_j = min(max(floor_w, 0.0) * max(duration_s, 0.0), energy_j)
    return floor_j * capacity_share(usage) + (energy_j - floor_j) * busy_share(usage)


class FloorTracker:
    """The lowest mean power a device has drawn over any interval of at least :data:`MIN_FLOOR_INTERVAL_S`.

    Until a long enough interval has been seen, the floor is the power of the interval being
    billed (so all of its energy counts as floor, billed by capacity share).

    Example:
        >>> floor = FloorTracker()
        >>> floor.observe(energy_j=300.0, duration_s=10.0)
        30.0
        >>> floor.observe(energy_j=500.0, duration_s=10.0)
        30.0
    """

    def __init__(self) -> None:
        self.floor_w: float | None = None

    def observe(self, energy_j: float, duration_s: float) -> float:
        """Learn from one interval; return the floor to bill it with, in watts."""
        if duration_s <= 0:
            return self.floor_w if self.floor_w is not None else 0.0
        power_w = max(energy_j, 0.0) / duration_s
        if duration_s >= MIN_FLOOR_INTERVAL_S and (self.floor_w is None or power_w < self.floor_w):
            self.floor_w = power_w
        return power_w if self.floor_w is None else self.floor_w
