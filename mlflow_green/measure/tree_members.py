"""A process tree's members, worked out from the parents just read.

Example:
    >>> sorted(tree_members({1: 0, 2: 1, 3: 2, 4: 1, 9: 5}, 1, exclude_pids={4}))
    [1, 2, 3]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping


def tree_members(parents: Mapping[int, int], root_pid: int, exclude_pids: Collection[int] = ()) -> frozenset[int]:
    """The root and its descendants among ``parents`` (PID -> parent PID), minus the excluded processes and
    their descendants (empty if the root is excluded)."""
    if root_pid in exclude_pids:
        return frozenset()
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, stack = {root_pid}, [root_pid]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found and child not in exclude_pids:
                found.add(child)
                stack.append(child)
    return frozenset(found)


__all__ = ["tree_members"]
