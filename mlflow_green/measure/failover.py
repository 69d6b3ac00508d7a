"""Which meter measures each component, and what happens when one fails mid-run.

A meter whose ``read()`` raises is quarantined: its components pass to the next available
meter by priority (opened then), its devices keep the energy counted so far (frozen once another
meter covers their component, else extrapolated at their mean power), and the switch shows in
``green.meters`` (``cpu:rapl>estimate``). Faults of single devices are not handled here: a
device that reads nonsense is quarantined alone (:mod:`mlflow_green.measure.device_guard`), and
meters handle their own devices' faults (NVML).

Example:
    >>> from mlflow_green.measure.selection import select_meters
    >>> from mlflow_green.testing import FakeMeter
    >>> roster = MeterRoster(select_meters([FakeMeter({"cpu:0": 10.0})]), explicit=False, start_s=0.0)
    >>> roster.assign["cpu"].name
    'fake'
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from mlflow_green.measure import shared_meters
from mlflow_green.measure.attribution import Attribution
from mlflow_green.measure.meters.base import Availability, Meter
from mlflow_green.measure.readings import (
    COMPONENTS,
    Component,
    DeviceCounter,
    Provenance,
    join_shares,
    share_label,
    weakest_provenance,
)
from mlflow_green.measure.selection import MeterSelection
from mlflow_green.measure.signal_safety import raised_by_signal_handler

logger = logging.getLogger(__name__)


def safe(call: Callable[[], Any], default: Any) -> Any:
    """A meter's optional hook, whose failure must not break measurement."""
    try:
        return call()
    except Exception as exc:
        if raised_by_signal_handler(exc):
            raise
        logger.debug("mlflow-green: meter hook %s failed: %s", getattr(call, "__name__", call), exc)
        return default


def distinct(meters: Iterable[Meter]) -> list[Meter]:
    """Each meter once, in order."""
    seen: dict[int, Meter] = {}
    for meter in meters:
        seen.setdefault(id(meter), meter)
    return list(seen.values())


class MeterRoster:
    """The meters of one tracker: which measures each component, opened and failed ones, carried devices.

    Args:
        selection: The outcome of meter selection.
        explicit: The user named the meters (negative priorities may then take over).
        start_s: When measurement started (for mean powers).
        fault: Called with (meter, message) for everything worth a line in ``faults``.
        attribution: Whose energy to bill, handed to each meter before it opens.
        sample_interval_s: Handed to meters that sample.
    """

    def __init__(
        self,
        selection: MeterSelection,
        *,
        explicit: bool,
        start_s: float,
        fault: Callable[[Meter, str], None] = lambda meter, message: None,
        attribution: Attribution | None = None,
        sample_interval_s: float = 0.1,
    ) -> None:
        self.selection = selection
        self.explicit = explicit
        self.start_s = start_s
        self._fault = fault
        self.attribution = attribution or Attribution()
        self.sample_interval_s = sample_interval_s
        self.assign: dict[Component, Meter] = dict(selection.assignments)
        self.opened: dict[int, Meter] = {}
        self.failed: set[int] = set()
        self.carry: dict[str, DeviceCounter] = {}
        self.last_good: dict[str, tuple[float, DeviceCounter]] = {}
        self.history: dict[Component, list[str]] = {}
        self._plan: list[tuple[Meter, frozenset[Component], bool]] | None = None

    def start(self, now_s: float) -> None:
        """Attribute and open every selected meter; a meter that cannot open fails over now."""
        for meter in self.selection.meters:  # labels show the scope they bill (rapl-counter*cpu-time)
            self.attribute(meter)
        self.history = {c: [m.label(c, self.availability(m).provenance)] for c, m in self.assign.items()}
        for meter in self.selection.meters:
            if not self.open(meter, now_s):
                self.fail_over(meter, now_s, "open() failed")

    def availability(self, meter: Meter) -> Availability:
        """What ``meter`` said about itself at selection."""
        for choice in self.selection.choices:
            if choice.meter is meter:
                return choice.availability
        return Availability.no("not considered")

    def attribute(self, meter: Meter) -> None:
        """Tell ``meter`` whose energy to bill; a failing hook means it bills whole devices."""
        try:
            meter.attribute(self.attribution)
        except Exception as exc:  # a plugin's hook must not break measurement
            self._fault(meter, f"attribute() failed: {exc}")

    def open(self, meter: Meter, now_s: float) -> bool:
        """Configure, attribute and open ``meter``; False (and a fault) when it cannot open."""
        configure = getattr(meter, "configure", None)
        if callable(configure):
            with contextlib.suppress(Exception):
                configure(sample_interval_s=self.sample_interval_s)
        self.attribute(meter)
        try:
            if id(meter) in self.opened or shared_meters.first_user(meter):  # else open already, for a measurement
                meter.open(now_s)  # running meanwhile (opening again rebased its counters)
        except Exception as exc:  # measurement never crashes training
            shared_meters.last_user(meter)
            self._fault(meter, f"open() failed: {exc}")
            return False
        self.opened[id(meter)] = meter
        return True

    def active(self) -> list[Meter]:
        """The meters measuring a component now."""
        return distinct(self.assign.values())

    def plan(self) -> list[tuple[Meter, frozenset[Component], bool]]:
        """What a read does: each active meter, the components taken from it, and whether it reports
        device faults (overrides ``take_faults``). Worked out once per assignment (a read's hot path)."""
        plan = self._plan
        if plan is None:
            plan = self._plan = [
                (meter, frozenset(c for c, m in self.assign.items() if m is meter),
                 getattr(type(meter), "take_faults", None) is not Meter.take_faults)
                for meter in self.active()
            ]
        return plan

    def fail_over(self, meter: Meter, now_s: float, reason: str) -> list[Meter]:
        """Quarantine ``meter``; hand its components to the next meters by priority; return those."""
        self._fault(meter, reason)
        self.failed.add(id(meter))
        self._plan = None  # the assignment changes below
        for device_id, (seen_s, counter) in list(self.last_good.items()):
            if counter.meter == meter.name and device_id not in self.carry:
                self.carry[device_id] = self.extrapolated(counter, seen_s, now_s, f"{meter.name} failed: {reason}")
        replacements: list[Meter] = []
        for component in [c for c, m in self.assign.items() if m is meter]:
            del self.assign[component]
            for candidate in (c.meter for c in self.selection.choices):
                avail = self.availability(candidate)
                if (
                    id(candidate) in self.failed
                    or not avail.available
                    or component not in avail.components
                    or (not self.explicit and candidate.priority < 0)
                ):
                    continue
                if id(candidate) not in self.opened and not self.open(candidate, now_s):
                    self.failed.add(id(candidate))
                    continue
                self.assign[component] = candidate
                self.history.setdefault(component, []).append(candidate.label(component, avail.provenance))
                if candidate not in replacements:
                    replacements.append(candidate)
                break
            else:  # nothing else measures it: its devices are extrapolated at their mean power
                self.history.setdefault(component, []).append("extrapolated")
        return replacements

    def extrapolated(self, counter: DeviceCounter, seen_s: float, now_s: float, note: str) -> DeviceCounter:
        """``counter`` carried forward from ``seen_s`` to ``now_s`` at its mean power so far."""
        elapsed_s = seen_s - self.start_s
        power_w = counter.energy_j / elapsed_s if elapsed_s > 0 else 0.0
        gap_s = max(now_s - seen_s, 0.0)
        if gap_s <= 0:
            return counter
        return replace(
            counter,
            energy_j=counter.energy_j + power_w * gap_s,
            provenance="estimate",
            note=counter.note or f"{note}; extrapolated at its mean power of {power_w:.1f} W",
        )

    def with_carry(self, reading: DeviceCounter) -> DeviceCounter:
        """A replacement meter's reading plus what the failed meter had counted for the device."""
        carried = self.carry.get(reading.device_id)
        if carried is None:
            return reading
        return replace(
            reading,
            energy_j=carried.energy_j + reading.energy_j,
            provenance=weakest_provenance((carried.provenance, reading.provenance)),
            note=carried.note or reading.note,
        )

    def carried_now(self, now_s: float, fresh: dict[str, DeviceCounter]) -> dict[str, DeviceCounter]:
        """Failed meters' devices nobody read now: frozen if their component is covered, else extrapolated."""
        found = {}
        for device_id, carried in self.carry.items():
            if device_id in fresh:
                continue
            if carried.component in self.assign:
                found[device_id] = carried
            else:
                seen_s, last = self.last_good.get(device_id, (now_s, carried))
                found[device_id] = self.extrapolated(last, seen_s, now_s, carried.note or "meter failed")
        return found

    def update_periods_s(self) -> dict[str, float]:
        """Every opened meter's known counter update periods (device id -> seconds)."""
        periods: dict[str, float] = {}
        for meter in self.opened.values():
            periods.update(safe(meter.update_periods_s, {}))
        return periods

    def meters_tag(self) -> str:
        """The ``green.meters`` tag: which meter measured each component, e.g. ``cpu:rapl,ram:estimate``.

        A component whose meter failed mid-run lists the meters in order: ``gpu:nvml-counter>estimate``.
        """
        provenance: dict[str, list[Provenance]] = {}
        shares: dict[str, list[str]] = {}
        for _, device in self.last_good.values():
            if device.device_id not in self.carry:
                provenance.setdefault(device.component, []).append(device.provenance)
                shares.setdefault(device.component, []).append(device.share)
        parts = []
        for component in COMPONENTS:
            labels = list(self.history.get(component, []))
            meter = self.assign.get(component)
            if meter is not None and component in provenance and labels:
                label = meter.label(component, weakest_provenance(provenance[component]))
                share = join_shares(*shares[component])
                # A reading apportioned by a share says so (gpu:nvml-counter*mig), whatever the meter's label
                labels[-1] = label if "*" in label or not share else share_label(label, share)
            if labels:
                parts.append(f"{component}:{'>'.join(labels)}")
        return ",".join(parts)
