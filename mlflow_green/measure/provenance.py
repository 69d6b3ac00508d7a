"""How a number was obtained and whose share it is: the vocabulary every reading carries.

A device component is a ``gpu``, ``cpu`` or ``ram``; its energy came from a ``counter``, was
``sampled`` (power x time) or is an ``estimate``; it bills a ``machine`` (the whole device) or a
``process`` tree's part of it, apportioned by one or more :data:`SHARE_BASES`.

Example:
    >>> basis(weakest_provenance(["counter", "sampled"]), join_shares("cpu-time", ""))
    'sampled, apportioned by cpu-time share'
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Literal

Component = Literal["gpu", "cpu", "ram"]
Provenance = Literal["counter", "sampled", "estimate"]
Scope = Literal["process", "machine"]

COMPONENTS: tuple[Component, ...] = ("gpu", "cpu", "ram")
PROVENANCES: tuple[Provenance, ...] = ("counter", "sampled", "estimate")
SCOPES: tuple[Scope, ...] = ("process", "machine")

SHARE_BASES: dict[str, str] = {
    "cpu-time": "this process tree's share of the CPU time spent on the machine",
    "rss": "this process tree's share of resident memory",
    "mig": "a MIG slice's share of its parent GPU",
    "gpu-utilisation": "this process tree's share of the GPU's utilisation, as NVML reports it per process",
    "shared-whole": "a GPU other processes used at the same time, billed whole (no per-process figure)",
    "time": "a share of a window by elapsed time (the data/train phase split)",
    "framework-device": "a GPU billed whole because the framework reports using it (NVML's process list "
    "showed no PID of this training, as in many containers)",
    "unattributed": "a GPU billed whole whose processes' PIDs live outside this PID namespace, with no "
    "framework to name its device",
}
"""How a number may have been apportioned (the ``share`` of a reading). A device read whole has
``share == ""``; several bases apply in turn and are joined with ``+`` (``cpu-time+time``)."""


@functools.lru_cache(maxsize=512)
def join_shares(*shares: str) -> str:
    """The bases of several apportionments, each once, in a stable order (cached: window arithmetic
    joins the same few at every epoch).

    Example:
        >>> join_shares("", "cpu-time", "time+cpu-time")
        'cpu-time+time'
    """
    order = list(SHARE_BASES)
    bases = {b for s in shares for b in s.split("+") if b}
    return "+".join(sorted(bases, key=lambda b: (order.index(b) if b in order else len(order), b)))


def basis(provenance: str, share: str = "") -> str:
    """How a number was obtained, in one phrase: the provenance, and the share if apportioned.

    Example:
        >>> basis("counter")
        'counter'
        >>> basis("counter", "cpu-time")
        'counter, apportioned by cpu-time share'
    """
    return f"{provenance}, apportioned by {share} share" if share else provenance


def share_label(label: str, share: str = "") -> str:
    """A meter's label in ``green.meters`` with the share its number was apportioned by, if any.

    ``rapl-counter`` is a whole package read from its counter; ``rapl-counter*cpu-time`` is that
    counter times this process tree's CPU-time share (``*`` reads "times the share of").

    Example:
        >>> share_label("rapl-counter", "cpu-time"), share_label("rapl-counter")
        ('rapl-counter*cpu-time', 'rapl-counter')
    """
    return f"{label}*{share}" if share else label


_PROVENANCE_RANK: dict[str, int] = {"counter": 2, "sampled": 1, "estimate": 0}


def weakest_provenance(values: Iterable[Provenance]) -> Provenance:
    """The least trustworthy provenance of several (``estimate`` < ``sampled`` < ``counter``).

    Example:
        >>> weakest_provenance(["counter", "sampled"])
        'sampled'
    """
    values = list(values)
    if not values:  # nothing measured is not a measurement
        return "estimate"
    return min(values, key=_PROVENANCE_RANK.__getitem__)


def weaker(a: Provenance, b: Provenance) -> Provenance:
    """The weaker of two provenances (:func:`weakest_provenance` of a pair, without building one).

    Example:
        >>> weaker("counter", "sampled"), weaker("counter", "counter")
        ('sampled', 'counter')
    """
    if a == b:
        return a
    return a if _PROVENANCE_RANK[a] <= _PROVENANCE_RANK[b] else b
