"""Choosing one meter per component (gpu, cpu, ram) by explicit priority.

Automatic selection takes, for each component, the available meter with the highest
``priority`` (ties broken by name, never by plugin load order); meters with a negative
priority, such as the CodeCarbon wrapper, are used only when named. When the user names meters,
their order is the priority and only they are considered, except that CPU and RAM always fall
back to the ``estimate`` meter so that a device that ran is never reported as 0 J.

Example:
    >>> from mlflow_green.testing import FakeMeter
    >>> sel = select_meters([FakeMeter({"gpu:GPU-0": 100.0})])
    >>> sel.assignments["gpu"].name
    'fake'
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from mlflow_green.measure.meters.base import Availability, Meter
from mlflow_green.measure.readings import COMPONENTS, Component
from mlflow_green.plugins import builtin as _builtin  # noqa: F401 - eager: keeps its import out of start()
from mlflow_green.plugins.manager import meter_factories

logger = logging.getLogger(__name__)

FALLBACK_METER = "estimate"


@dataclass(frozen=True)
class MeterChoice:
    """One meter considered for selection, with what it said about itself."""

    meter: Meter
    availability: Availability
    components: tuple[Component, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """JSON-ready view for ``doctor --json`` and ``report.json``."""
        return {
            "name": self.meter.name,
            "priority": self.meter.priority,
            "description": self.meter.description,
            "available": self.availability.available,
            "reason": self.availability.reason,
            "provenance": self.availability.provenance if self.availability.available else None,
            "measures": list(self.availability.components),
            "selected_for": list(self.components),
        }


@dataclass(frozen=True)
class MeterSelection:
    """The outcome of selection: which meter measures which component, and why."""

    assignments: dict[Component, Meter]
    choices: tuple[MeterChoice, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def meters(self) -> tuple[Meter, ...]:
        """The distinct selected meters, in selection order."""
        seen: dict[int, Meter] = {}
        for meter in self.assignments.values():
            seen.setdefault(id(meter), meter)
        return tuple(seen.values())

    def components_of(self, meter: Meter) -> frozenset[Component]:
        """The components a selected meter is responsible for."""
        return frozenset(c for c, m in self.assignments.items() if m is meter)


def instantiate(names: Sequence[str] | None) -> list[Meter]:
    """Fresh meters for the given names (all registered meters when None)."""
    factories = meter_factories()
    wanted = list(factories) if names is None else list(names)
    if names is not None and FALLBACK_METER not in wanted and FALLBACK_METER in factories:
        wanted.append(FALLBACK_METER)
    meters = []
    for name in wanted:
        try:
            meters.append(factories[name]())
        except Exception as exc:  # a broken plugin is skipped, with the reason
            logger.warning("mlflow-green: meter %r could not be created: %s", name, exc)
    return meters


def select_meters(candidates: Sequence[Meter], *, explicit_order: bool = False) -> MeterSelection:
    """Pick one meter per component among ``candidates``.

    Args:
        candidates: Unopened meters.
        explicit_order: Use the order of ``candidates`` as the priority (the user named them)
            instead of each meter's ``priority``.
    """
    availability = {id(m): _safe_availability(m) for m in candidates}
    if explicit_order:
        ranked = list(candidates)
    else:  # a negative priority means "only when named in meters="
        ranked = sorted((m for m in candidates if m.priority >= 0), key=lambda m: (-m.priority, m.name))
        ranked += sorted((m for m in candidates if m.priority < 0), key=lambda m: m.name)
    assignments: dict[Component, Meter] = {}
    notes: list[str] = []
    for component in COMPONENTS:
        for meter in ranked:
            avail = availability[id(meter)]
            if not explicit_order and meter.priority < 0:
                continue
            if avail.available and component in avail.components:
                assignments[component] = meter
                break
    for meter in ranked:
        avail = availability[id(meter)]
        if not avail.available:
            notes.append(f"{meter.name}: {avail.reason}")
    choices = tuple(
        MeterChoice(m, availability[id(m)], tuple(c for c in COMPONENTS if assignments.get(c) is m)) for m in ranked
    )
    return MeterSelection(assignments, choices, tuple(notes))


def _safe_availability(meter: Meter) -> Availability:
    try:
        return meter.is_available()
    except Exception as exc:  # is_available must not raise; a plugin that does is unavailable
        return Availability.no(f"{meter.name}: is_available() raised {type(exc).__name__}: {exc}")
