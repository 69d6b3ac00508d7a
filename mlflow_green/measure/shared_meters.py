"""Meter instances shared by measurements that run at once.

A ``track()`` block inside another given the same meter objects, a decorated function calling itself (each call a
fresh tracker with the same meters), a probe model fitted inside a callback under ``autolog(meters=[...])``: each
measurement opened the meter again, which rebases it (a meter's counters are cumulative since ``open()``) — the
outer measurement's energy went down by the inner one's (a decorated recursion's outer call logged 1.56 J for 0.7 s
at 50 W) — and the inner one closed it under the outer one. Now the first user opens a meter instance and the last
one closes it; the others read it as it goes, each measurement's energy being its own end reading minus its own
start reading.

Example:
    >>> class Meter: ...
    >>> meter = Meter()
    >>> first_user(meter), first_user(meter), last_user(meter), last_user(meter)
    (True, False, False, True)
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()
_USERS: dict[int, tuple[object, int]] = {}
"""id(meter) -> (the meter, how many measurements use it now): the meter is held, so that its id is not taken by
another object while it counts (a measurement never closed would otherwise leave a count a new meter inherits)."""


def first_user(meter: object) -> bool:
    """A measurement takes ``meter``: True if no other uses it now (open it)."""
    with _LOCK:
        users = _USERS.get(id(meter), (meter, 0))[1]
        _USERS[id(meter)] = (meter, users + 1)
        return users == 0


def last_user(meter: object) -> bool:
    """A measurement lets go of ``meter``: True if no other uses it any more (close it)."""
    with _LOCK:
        users = _USERS.get(id(meter), (meter, 0))[1] - 1
        if users > 0:
            _USERS[id(meter)] = (meter, users)
            return False
        _USERS.pop(id(meter), None)
        return True


__all__ = ["first_user", "last_user"]
