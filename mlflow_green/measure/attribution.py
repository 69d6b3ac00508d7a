"""Whose energy a tracker bills: the scope (``process`` or ``machine``) and this training's processes.

By default (``scope="process"``) a run is billed for what its own process tree used: the GPUs
on which it holds a context, its share of CPU time and of resident memory. ``scope="machine"``
bills whole devices, for dedicated hosts. Meters learn the attribution through
:meth:`~mlflow_green.meters.base.Meter.attribute` before ``open()``; a meter that does not
implement it reports whole devices (``scope="machine"`` on its readings).

Example:
    >>> tree = ProcessTree()
    >>> os.getpid() in tree.pids()
    True
    >>> Attribution("machine").scope
    'machine'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import psutil

from mlflow_green.measure.readings import Scope


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
    """

    root_pid: int = field(default_factory=os.getpid)
    exclude_pids: frozenset[int] = frozenset()

    def pids(self) -> frozenset[int]:
        """The PIDs of the tree now (the root and its descendants that are not excluded)."""
        if self.root_pid in self.exclude_pids:
            return frozenset()
        try:
            root = psutil.Process(self.root_pid)
            found = {self.root_pid}
            stack = list(root.children())
        except (psutil.Error, OSError):
            return frozenset({self.root_pid})
        while stack:
            child = stack.pop()
            if child.pid in self.exclude_pids:
                continue
            found.add(child.pid)
            try:
                stack.extend(child.children())
            except (psutil.Error, OSError):
                continue
        return frozenset(found)


@dataclass(frozen=True)
class Attribution:
    """What a meter should bill: whole devices (``machine``) or this process tree's part (``process``).

    Example:
        >>> Attribution().scope
        'process'
    """

    scope: Scope = "process"
    processes: ProcessTree = field(default_factory=ProcessTree)
