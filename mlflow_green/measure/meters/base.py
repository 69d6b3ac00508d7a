"""The meter interface every energy source implements, built-in or third-party.

A meter is cheap to construct (no I/O in ``__init__``). ``is_available()`` never raises and
says why not. ``open()`` starts measuring; ``read()`` returns each device's cumulative energy
since ``open()``; ``poll()`` is called from the tracker's background thread every
``poll_interval_s`` seconds, and only for meters that set it (power sampling, or guarding a
counter against wraparound). Meters are registered through the ``register_meters`` hook.

Example:
    >>> from mlflow_green.measure.meters.base import Availability
    >>> Availability.no("RAPL: /sys/class/powercap not present").available
    False
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from mlflow_green.measure.readings import Component, DeviceCounter, Provenance, share_label

if TYPE_CHECKING:
    from mlflow_green.measure.attribution import Attribution


@dataclass(frozen=True)
class Availability:
    """Whether a meter works here, which components it can measure, and why (not).

    Attributes:
        available: True if the meter can measure at least one component here.
        reason: One line a user can act on, e.g. ``"/sys/class/powercap not present (VM or
            container) — CPU energy will be estimated"``.
        components: The components it measures here (empty when unavailable).
        provenance: How it measures them here (``counter``, ``sampled`` or ``estimate``).
    """

    available: bool
    reason: str
    components: frozenset[Component] = frozenset()
    provenance: Provenance = "estimate"

    @classmethod
    def yes(cls, reason: str, components: Iterable[Component], provenance: Provenance) -> Availability:
        """An available meter."""
        return cls(True, reason, frozenset(components), provenance)

    @classmethod
    def no(cls, reason: str) -> Availability:
        """An unavailable meter, with the reason."""
        return cls(False, reason)


class Meter(abc.ABC):
    """Base class of energy meters.

    Class attributes:
        name: Short unique name used in configuration and in the ``green.meters`` tag.
        priority: Higher is preferred when several meters can measure a component
            (counters 100, sampled 50, the always-available estimate 0; a negative priority,
            like the CodeCarbon wrapper's, means "only when named in ``meters=``").
        description: One line for ``mlflow-green doctor``.

    Example:
        >>> from mlflow_green.testing import FakeMeter
        >>> meter = FakeMeter(power_w={"gpu:GPU-0": 100.0})
        >>> meter.is_available().available
        True
    """

    name: ClassVar[str] = ""
    priority: ClassVar[int] = 0
    description: ClassVar[str] = ""

    #: Seconds between ``poll()`` calls, or None when the meter needs no background thread.
    poll_interval_s: float | None = None

    @abc.abstractmethod
    def is_available(self) -> Availability:
        """Whether this meter works here. Must never raise."""

    def attribute(self, attribution: Attribution) -> None:  # noqa: B027 - optional hook
        """Called once before ``open()``: whose energy to bill (see :mod:`mlflow_green.measure.attribution`).

        A meter that ignores it reports whole devices and labels its readings ``scope="machine"``.
        """

    @abc.abstractmethod
    def open(self, now_s: float) -> None:
        """Start measuring at monotonic time ``now_s`` (initialise libraries, read baselines)."""

    @abc.abstractmethod
    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        """Cumulative energy of every device since ``open()``, at monotonic time ``now_s``.

        Raises:
            MeterError: when nothing could be read; the tracker then keeps the last good values.
        """

    def capture(self, now_s: float) -> object | None:
        """Optional: the raw inputs of a read at ``now_s``, taken cheaply and changing nothing.

        A window boundary on a training thread takes these, and :meth:`read_captured` turns them
        into the read later (in order, off that thread). None (the default) means the meter is
        read at once. A meter that is polled (``poll_interval_s``) must not capture.
        """
        return None

    def capturer(self) -> Callable[[], object | None] | None:
        """Optional: what :meth:`capture` does, as a callable without arguments, valid until the meter is
        closed (a window boundary's shortest path); None (the default): :meth:`capture` is called."""
        return None

    def read_captured(self, now_s: float, raw: object) -> tuple[DeviceCounter, ...]:
        """The read at ``now_s`` from what :meth:`capture` took then: what ``read(now_s)`` would have returned.

        Called once per capture, in the order of the captures and before any later ``read``.
        """
        raise NotImplementedError(f"{self.name} captures nothing")

    def preview_captured(
        self, captures: Sequence[tuple[float, object]], components: Iterable[Component], state: object = None,
    ) -> tuple[list[dict[str, float]], object] | None:
        """Optional: the counters of the devices of ``components`` after each of ``captures`` (in order,
        device id -> joules), worked out without moving the meter's state on.

        What :meth:`read_captured` of each in turn would count: a training thread shows the figures
        of a boundary at once and leaves the reads to the thread that accounts for the epoch. Returns
        the counters and an opaque state to pass with the captures that follow (``state`` None: they
        follow the last read). None (the default): only reading tells.
        """
        return None

    def poll(self, now_s: float) -> None:  # noqa: B027 - optional hook
        """Called from the background thread every ``poll_interval_s`` seconds.

        ``poll_interval_s`` may change while the meter is open (a property): None stops the
        polling, a number (re)starts it at the next window boundary.
        """

    def update_periods_s(self) -> Mapping[str, float]:
        """Seconds between updates of each device's counter, where known (device id -> s).

        Windows shorter than ten update periods are flagged as too coarse to trust.
        """
        return {}

    def take_faults(self) -> list[str]:
        """Device-level faults since the last call (a device quarantined, a counter reset)."""
        return []

    def report(self) -> Mapping[str, Any]:
        """What this meter adds to ``report.json`` (e.g. which devices were billed and why)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Called once; must not raise."""

    def label(self, component: Component, provenance: Provenance) -> str:
        """How this meter appears in the ``green.meters`` tag for one component."""
        return self.name


PROCESS_SHARES: Mapping[Component, str] = MappingProxyType({"cpu": "cpu-time", "ram": "rss"})
"""How a meter of whole CPU packages and RAM bills a process tree under ``scope="process"``:
the CPU by its share of CPU time, RAM by its share of resident memory."""


class ProcessShareMeter(Meter):
    """A meter of whole devices that, under ``scope="process"``, bills this process tree's share of them.

    Readings of a component in ``shares`` then carry that share (``share="cpu-time"``), and the
    ``green.meters`` label says so (``estimate*cpu-time``). Subclasses set ``self.attribution``
    (``Attribution("machine")`` until the tracker calls :meth:`attribute`) in ``__init__``.

    Example:
        >>> from mlflow_green.measure.attribution import Attribution
        >>> from mlflow_green.measure.meters.estimate import EstimateMeter
        >>> meter = EstimateMeter()
        >>> meter.attribute(Attribution("process"))
        >>> meter.share_of("cpu"), meter.label("ram", "estimate")
        ('cpu-time', 'estimate*rss')
    """

    shares: ClassVar[Mapping[Component, str]] = PROCESS_SHARES
    attribution: Attribution

    @property
    def process_scope(self) -> bool:
        """True when this meter bills this process tree's share (``scope="process"``)."""
        return self.attribution.scope == "process"

    def attribute(self, attribution: Attribution) -> None:
        self.attribution = attribution

    def share_of(self, component: Component) -> str:
        """The share basis of this meter's reading of ``component`` (``""`` when read whole)."""
        return self.shares.get(component, "") if self.process_scope else ""

    def label(self, component: Component, provenance: Provenance) -> str:
        """``<name>``, or ``<name>*cpu-time`` / ``<name>*rss`` when this process tree's share is billed."""
        return share_label(self.name, self.share_of(component))
