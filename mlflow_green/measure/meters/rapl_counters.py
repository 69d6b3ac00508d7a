"""RAPL zone counters over time: wraparound, dies that mirror one counter, a zone that stops answering.

A zone's ``energy_uj`` wraps at ``max_energy_range_uj``; a decrease is read as one wrap, so the
meter is polled often enough (:func:`guard_interval_s`) that no counter wraps twice unseen.
Dies whose counters hold the same value at open are suspected mirrors of one package-wide
counter: the first conclusive interval decides whether one is counted once or summed. A zone
whose read fails is extrapolated at its mean power so far, with a note.

Example:
    >>> zone = Zone(Path("intel-rapl:0"), max_range_uj=1_000_000, start_uj=900_000, last_uj=900_000, last_ok_s=0.0)
    >>> zone_step(zone, lambda path: 100_000, now_s=1.0, last_s=0.0, opened_at_s=0.0)  # wrapped once
    0.2
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlflow_green.measure.meters.rapl_zones import DeviceZones
from mlflow_green.measure.shares import FloorTracker

logger = logging.getLogger(__name__)

GUARD_POWER_W = 1000.0
"""Highest package power assumed when choosing how often to read, so a wrap is never missed."""
MIN_POLL_INTERVAL_S = 1.0
MAX_POLL_INTERVAL_S = 60.0
MIRROR_TOLERANCE_J = 1.0
"""Two counters read one after the other differ by what accrued in between: within this, they mirror."""
UJ_PER_J = 1e6

ReadUj = Callable[[Path], int]
"""Reads one zone's ``energy_uj`` (raises ``OSError``/``ValueError`` when it cannot)."""


@dataclass
class Zone:
    """One powercap zone's counter: where it started, its last raw value, what it accrued."""

    path: Path
    max_range_uj: int | None
    start_uj: int
    last_uj: int
    last_ok_s: float
    total_uj: int = 0
    mean_power_w: float = 0.0
    note: str = ""
    mirror_of: Zone | None = None  # suspected to mirror another zone: not counted until decided

    @property
    def energy_j(self) -> float:
        return self.total_uj / UJ_PER_J


@dataclass
class ZoneDevice:
    """One reported device (``cpu:0``, ``ram:0``): its zones and the energy billed to it so far."""

    spec: DeviceZones
    label: str
    zones: list[Zone]
    energy_j: float = 0.0
    floor: FloorTracker = field(default_factory=FloorTracker)

    @property
    def note(self) -> str:
        notes = [z.note for z in self.zones if z.note]
        if self.spec.kind == "psys":
            notes.insert(0, "psys: the whole platform (CPU packages, DRAM, integrated GPU, chipset), no package zone")
        return "; ".join(notes)


def open_zone(path: Path, start_uj: int, max_range_uj: int | None, now_s: float, others: list[Zone]) -> Zone:
    """A zone read at open; a suspected mirror of one of ``others`` when it holds the same counter value."""
    zone = Zone(path, max_range_uj, start_uj, start_uj, now_s)
    zone.mirror_of = next(  # the same counter value as another die's: probably its mirror
        (z for z in others if start_uj > 0 and abs(start_uj - z.start_uj) <= MIRROR_TOLERANCE_J * UJ_PER_J),
        None,
    )
    return zone


def guard_interval_s(zones: list[Zone]) -> float:
    """Seconds between reads so no counter can wrap twice unseen, even at GUARD_POWER_W."""
    ranges_uj = [z.max_range_uj for z in zones if z.max_range_uj is not None]
    if not ranges_uj:
        return MAX_POLL_INTERVAL_S
    interval_s = min(ranges_uj) / UJ_PER_J / GUARD_POWER_W
    return min(max(interval_s, MIN_POLL_INTERVAL_S), MAX_POLL_INTERVAL_S)


def zone_step(zone: Zone, read_uj: ReadUj, now_s: float, last_s: float, opened_at_s: float) -> float:
    """Joules one zone accrued since the last read at ``last_s``; extrapolated if it fails."""
    if zone.note:
        return zone.mean_power_w * max(now_s - last_s, 0.0)
    try:
        raw_uj = read_uj(zone.path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        _degrade(zone, now_s, opened_at_s, exc)
        return zone.mean_power_w * max(now_s - last_s, 0.0)
    if raw_uj >= zone.last_uj:
        delta_uj = raw_uj - zone.last_uj
    elif zone.max_range_uj is not None:
        delta_uj = raw_uj + zone.max_range_uj - zone.last_uj  # the counter wrapped once
    else:
        logger.warning("RAPL: %s decreased and has no max_energy_range_uj; counting from 0", zone.path)
        delta_uj = raw_uj
    zone.total_uj += delta_uj
    zone.last_uj = raw_uj
    zone.last_ok_s = now_s
    return delta_uj / UJ_PER_J


def _degrade(zone: Zone, now_s: float, opened_at_s: float, exc: BaseException) -> None:
    elapsed_s = zone.last_ok_s - opened_at_s
    zone.mean_power_w = zone.energy_j / elapsed_s if elapsed_s > 0 else 0.0
    zone.note = (
        f"RAPL: reading {zone.path / 'energy_uj'} failed after {now_s - opened_at_s:.1f} s ({exc}); "
        f"energy extrapolated at its mean power so far, {zone.mean_power_w:.1f} W"
    )
    logger.warning(zone.note)


def device_step(device: ZoneDevice, read_uj: ReadUj, now_s: float, last_s: float, opened_at_s: float) -> float:
    """Joules the device accrued since the last read: its zones, each mirror counted once."""
    steps = {id(z): zone_step(z, read_uj, now_s, last_s, opened_at_s) for z in device.zones}
    energy_j = 0.0
    for zone in device.zones:
        reference = zone.mirror_of
        if reference is None:
            energy_j += steps[id(zone)]
        elif reference.total_uj > 0 or zone.total_uj > 0:  # a conclusive interval: decide
            gap_j = abs(zone.energy_j - reference.energy_j)
            if gap_j <= max(MIRROR_TOLERANCE_J, 1e-6 * max(zone.energy_j, reference.energy_j)):
                device.zones = [z for z in device.zones if z is not zone]  # a mirror: never counted
                logger.info("RAPL: %s mirrors %s; counted once", zone.path, reference.path)
            else:
                zone.mirror_of = None  # its own counter: count all it accrued since open
                energy_j += zone.energy_j
    return energy_j
