"""CPU package and DRAM energy from Linux powercap RAPL counters (``energy_uj``).

Layout read (``/sys/class/powercap``)::

    intel-rapl:0/                 name = package-0   -> cpu:0 (one zone per socket)
    intel-rapl:0/intel-rapl:0:0/  name = core        ignored: part of the package
    intel-rapl:0/intel-rapl:0:1/  name = uncore      ignored: part of the package
    intel-rapl:0/intel-rapl:0:2/  name = dram        -> ram:0 (DRAM is outside the package)
    intel-rapl:1/                 name = psys        ignored: whole platform, overlaps all

AMD CPUs (Zen, kernel >= 5.8) appear under the same ``intel-rapl`` naming with ``package-N``
zones and no DRAM zone; zones named ``amd-rapl:N`` are read the same way.
``intel-rapl-mmio:N`` zones are the same package counter exposed through MMIO and are
ignored so that a package is never counted twice.

The counters wrap at ``max_energy_range_uj``; a decrease is read as one wrap. The meter asks
the tracker to poll it often enough (``poll_interval_s``) that a counter never wraps twice
between two reads, even at 1 kW per package.

Example:
    >>> meter = RaplMeter("/nonexistent")
    >>> meter.is_available().reason.startswith("RAPL: /nonexistent not present")
    True
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlflow_green.errors import MeterError
from mlflow_green.measure import hardware
from mlflow_green.measure.meters.base import Availability, Meter
from mlflow_green.measure.readings import Component, DeviceCounter, Provenance

logger = logging.getLogger(__name__)

POWERCAP_ROOT = "/sys/class/powercap"
GUARD_POWER_W = 1000.0
"""Highest package power assumed when choosing how often to read, so a wrap is never missed."""
MIN_POLL_INTERVAL_S = 1.0
MAX_POLL_INTERVAL_S = 60.0

_PACKAGE_ZONE_RE = re.compile(r"^(?:intel|amd)-rapl:(\d+)$")
_PACKAGE_NAME_RE = re.compile(r"^package-(\d+)$")
_UJ_PER_J = 1e6

ReadText = Callable[[Path], str]


def _read_text(path: Path) -> str:
    return path.read_text(encoding="ascii")


def _permission_reason(path: Path) -> str:
    return (
        f"RAPL: {path} is not readable (kernels restrict energy_uj to root since CVE-2020-8694) — "
        "run as root, or `sudo chmod -R a+r /sys/class/powercap/intel-rapl*`; CPU energy will be estimated"
    )


@dataclass(frozen=True)
class _ZoneSpec:
    device_id: str
    component: Component
    path: Path


@dataclass
class _Zone:
    spec: _ZoneSpec
    label: str
    max_range_uj: int | None
    last_uj: int
    total_uj: int = 0
    last_ok_s: float = 0.0
    mean_power_w: float = 0.0
    note: str = ""

    def energy_j(self, now_s: float) -> float:
        energy_j = self.total_uj / _UJ_PER_J
        if self.note:  # degraded: extrapolate from the mean power seen so far
            energy_j += self.mean_power_w * max(now_s - self.last_ok_s, 0.0)
        return energy_j


class RaplMeter(Meter):
    """Per-socket CPU package and DRAM energy from Linux powercap RAPL ``energy_uj`` counters.

    Args:
        root: The powercap folder (``/sys/class/powercap``; a fake tree in tests).
        read_text: Reads one sysfs file; injectable so tests can simulate ``PermissionError``
            (tests usually run as root, where ``chmod 000`` does not stop reads).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from mlflow_green.testing import FakePowercapTree
        >>> tree = FakePowercapTree(Path(tempfile.mkdtemp()))
        >>> tree.add_socket(0)
        >>> meter = RaplMeter(tree.root, read_text=tree.read_text)
        >>> meter.open(0.0)
        >>> tree.advance(0, package_j=50.0, dram_j=5.0)
        >>> [(c.device_id, c.energy_j) for c in meter.read(1.0)]
        [('cpu:0', 50.0), ('ram:0', 5.0)]
    """

    name = "rapl"
    priority = 100
    description = "CPU package and DRAM energy counters (Linux powercap RAPL)"

    def __init__(self, root: str | os.PathLike[str] = POWERCAP_ROOT, *, read_text: ReadText | None = None) -> None:
        self._root = Path(root)
        self._read = read_text or _read_text
        self._lock = threading.Lock()
        self._zones: list[_Zone] = []
        self._opened_at_s: float | None = None
        self.poll_interval_s = MAX_POLL_INTERVAL_S

    # -- discovery -------------------------------------------------------------------------

    def _zone_name(self, zone: Path) -> str | None:
        try:
            return self._read(zone / "name").strip()
        except (OSError, UnicodeDecodeError):
            return None

    def _discover(self) -> list[_ZoneSpec]:
        """Package zones (one per socket) and their DRAM subzones, in socket order."""
        specs: dict[str, _ZoneSpec] = {}
        for entry in sorted(self._root.iterdir(), key=lambda p: p.name):
            match = _PACKAGE_ZONE_RE.match(entry.name)
            if match is None or not entry.is_dir():
                continue
            name = self._zone_name(entry)
            if name is None:
                socket = int(match.group(1))  # unnamed zone: trust the zone index
            else:
                named = _PACKAGE_NAME_RE.match(name)
                if named is None:  # psys (whole platform) overlaps the packages: ignore it
                    continue
                socket = int(named.group(1))
            cpu_id = f"cpu:{socket}"
            if cpu_id in specs:
                continue
            specs[cpu_id] = _ZoneSpec(cpu_id, "cpu", entry)
            dram = self._dram_zone(entry)
            if dram is not None:
                specs[f"ram:{socket}"] = _ZoneSpec(f"ram:{socket}", "ram", dram)
        return list(specs.values())

    def _dram_zone(self, package: Path) -> Path | None:
        """The ``dram`` subzone of a package; core/uncore subzones are part of the package."""
        pattern = re.compile(rf"^{re.escape(package.name)}:\d+$")
        candidates = [p for p in package.iterdir() if pattern.match(p.name)]
        candidates += [p for p in self._root.iterdir() if pattern.match(p.name)]  # top-level links
        seen: set[Path] = set()
        for zone in sorted(candidates, key=lambda p: p.name):
            resolved = zone.resolve()
            if resolved in seen or not zone.is_dir():
                continue
            seen.add(resolved)
            if self._zone_name(zone) == "dram":
                return zone
        return None

    def _read_uj(self, zone: Path) -> int:
        return int(self._read(zone / "energy_uj").strip())

    def _read_max_range_uj(self, zone: Path) -> int | None:
        try:
            value = int(self._read(zone / "max_energy_range_uj").strip())
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return value if value > 0 else None

    # -- Meter API ---------------------------------------------------------------------------

    def is_available(self) -> Availability:
        try:
            return self._availability()
        except Exception as exc:  # never raise from is_available
            return Availability.no(f"RAPL: cannot read {self._root} ({exc!r}) — CPU energy will be estimated")

    def _availability(self) -> Availability:
        if not self._root.is_dir():
            return Availability.no(f"RAPL: {self._root} not present (VM or container) — CPU energy will be estimated")
        specs = self._discover()
        packages = [s for s in specs if s.component == "cpu"]
        if not packages:
            return Availability.no(
                f"RAPL: no intel-rapl package zones under {self._root} (no RAPL driver, or not an x86 CPU)"
                " — CPU energy will be estimated"
            )
        for spec in packages:
            try:
                self._read_uj(spec.path)
            except PermissionError:
                return Availability.no(_permission_reason(spec.path / "energy_uj"))
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                return Availability.no(
                    f"RAPL: cannot read {spec.path / 'energy_uj'} ({exc}) — CPU energy will be estimated"
                )
        components: set[Component] = {"cpu"}
        for spec in specs:
            if spec.component == "ram":
                try:
                    self._read_uj(spec.path)
                    components.add("ram")
                except (OSError, ValueError, UnicodeDecodeError):
                    continue
        what = "package and DRAM" if "ram" in components else "package"
        return Availability.yes(
            f"RAPL: {len(packages)} socket(s), {what} energy counters under {self._root}", components, "counter"
        )

    def open(self, now_s: float) -> None:
        if not self._root.is_dir():
            raise MeterError(f"RAPL: {self._root} not present")
        try:
            specs = self._discover()
        except OSError as exc:
            raise MeterError(f"RAPL: cannot list {self._root}: {exc}") from exc
        zones: list[_Zone] = []
        cpu_label = hardware.cpu_model()
        for spec in specs:
            try:
                start_uj = self._read_uj(spec.path)
            except PermissionError as exc:
                if spec.component == "cpu":
                    raise MeterError(_permission_reason(spec.path / "energy_uj")) from exc
                logger.warning("RAPL: skipping unreadable DRAM zone %s: %s", spec.path, exc)
                continue
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                if spec.component == "cpu":
                    raise MeterError(f"RAPL: cannot read {spec.path / 'energy_uj'}: {exc}") from exc
                logger.warning("RAPL: skipping unreadable DRAM zone %s: %s", spec.path, exc)
                continue
            label = cpu_label if spec.component == "cpu" else "DRAM"
            zones.append(_Zone(spec, label, self._read_max_range_uj(spec.path), start_uj, last_ok_s=now_s))
        if not any(z.spec.component == "cpu" for z in zones):
            raise MeterError(f"RAPL: no readable package zone under {self._root}")
        with self._lock:
            self._zones = zones
            self._opened_at_s = now_s
        self.poll_interval_s = self._guard_interval_s(zones)

    @staticmethod
    def _guard_interval_s(zones: list[_Zone]) -> float:
        """Seconds between reads so no counter can wrap twice unseen, even at GUARD_POWER_W."""
        ranges_uj = [z.max_range_uj for z in zones if z.max_range_uj is not None]
        if not ranges_uj:
            return MAX_POLL_INTERVAL_S
        interval_s = min(ranges_uj) / _UJ_PER_J / GUARD_POWER_W
        return min(max(interval_s, MIN_POLL_INTERVAL_S), MAX_POLL_INTERVAL_S)

    def _update(self, zone: _Zone, now_s: float) -> None:
        """Read one zone's counter and accumulate the delta since its last read (lock held)."""
        if zone.note:
            return
        try:
            raw_uj = self._read_uj(zone.spec.path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            self._degrade(zone, now_s, exc)
            return
        if raw_uj >= zone.last_uj:
            delta_uj = raw_uj - zone.last_uj
        elif zone.max_range_uj is not None:
            delta_uj = raw_uj + zone.max_range_uj - zone.last_uj  # the counter wrapped once
        else:
            logger.warning("RAPL: %s decreased and has no max_energy_range_uj; counting from 0", zone.spec.path)
            delta_uj = raw_uj
        zone.total_uj += delta_uj
        zone.last_uj = raw_uj
        zone.last_ok_s = now_s

    def _degrade(self, zone: _Zone, now_s: float, exc: BaseException) -> None:
        opened_at_s = self._opened_at_s if self._opened_at_s is not None else now_s
        elapsed_s = zone.last_ok_s - opened_at_s
        zone.mean_power_w = zone.total_uj / _UJ_PER_J / elapsed_s if elapsed_s > 0 else 0.0
        zone.note = (
            f"RAPL: reading {zone.spec.path / 'energy_uj'} failed after {now_s - opened_at_s:.1f} s ({exc}); "
            f"energy extrapolated at its mean power so far, {zone.mean_power_w:.1f} W"
        )
        logger.warning(zone.note)

    def poll(self, now_s: float) -> None:
        """Read every counter so that none wraps twice between two window boundaries."""
        with self._lock:
            for zone in self._zones:
                self._update(zone, now_s)

    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        with self._lock:
            if self._opened_at_s is None:
                raise MeterError("RAPL: read() before open()")
            for zone in self._zones:
                self._update(zone, now_s)
            if all(z.note and z.last_ok_s <= self._opened_at_s for z in self._zones):
                raise MeterError(f"RAPL: no counter under {self._root} could be read")
            return tuple(self._counter(z, now_s) for z in self._zones)

    def _counter(self, zone: _Zone, now_s: float) -> DeviceCounter:
        provenance: Provenance = "estimate" if zone.note else "counter"
        return DeviceCounter(
            device_id=zone.spec.device_id,
            component=zone.spec.component,
            energy_j=zone.energy_j(now_s),
            provenance=provenance,
            meter=self.name,
            label=zone.label,
            note=zone.note,
        )

    def close(self) -> None:
        with self._lock:
            self._zones = []
            self._opened_at_s = None
