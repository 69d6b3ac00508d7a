"""The processes created between two looks, told by the order in which Linux hands out PIDs.

The kernel hands out PIDs in increasing order (``/proc/sys/kernel/ns_last_pid``, the last one handed
out, wraps at ``pid_max``), so while it has not moved no process was created anywhere, and when it has
moved the new processes are the listed PIDs between the previous value and the new one (across the
wrap after one).

Example:
    >>> created_since([1, 5, 90, 105, 120], 100, 110)
    [105]
"""

from __future__ import annotations

from collections.abc import Iterable


def created_since(listed: Iterable[int], previous: int, last: int) -> list[int]:
    """The listed PIDs handed out after ``previous`` up to ``last`` (across the wrap if ``last < previous``):
    not a process older than the last wrap (PID above the counter); one newer than ``last`` is found next time.

    Example:
        >>> created_since([1, 5, 90, 105, 120], 100, 110), created_since([1, 5, 90, 120], 100, 7)
        ([105], [1, 5, 120])
    """
    if last >= previous:
        return [pid for pid in listed if previous < pid <= last]
    return [pid for pid in listed if pid > previous or pid <= last]


__all__ = ["created_since"]
