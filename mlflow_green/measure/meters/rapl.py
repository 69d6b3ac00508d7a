"""CPU package and DRAM energy from Linux powercap RAPL counters (``energy_uj``).

Which zones are read — packages, the dies of multi-die packages, DRAM, and ``psys`` only when
there is nothing else — is :mod:`mlflow_green.measure.meters.rapl_zones`. Dies that mirror one
package-wide counter (their counters hold the same value at open and move together) are counted
once, as CodeCarbon does; a die whose counter moves on its own is summed with the others.

The counters wrap at ``max_energy_range_uj``; a decrease is read as one wrap. The meter asks
the tracker to poll it often enough (``poll_interval_s``) that a counter never wraps twice
between two reads, even at 1 kW per package; under ``scope="process"`` it polls every second.

Under ``scope="process"`` (the default) each interval between two reads is split
(:mod:`mlflow_green.measure.shares`): the package's idle floor (the lowest power seen over the
run) by this process tree's share of the CPU capacity, the energy above it by the tree's share
of the machine's busy CPU time; DRAM by the tree's share of resident memory. Readings then say
``share="cpu-time"`` / ``"rss"`` and the ``green.meters`` label is ``rapl-counter*cpu-time``.

Example:
    >>> import tempfile
    >>> missing = Path(tempfile.mkdtemp()) / "powercap"
    >>> RaplMeter(missing).is_available().reason.startswith(f"RAPL: {missing} not present")
    True
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_green.errors import MeterError
from mlflow_green.measure import hardware, procfs
from mlflow_green.measure.attribution import Attribution, Usage, UsageProbe
from mlflow_green.measure.meters.base import Availability, Meter
from mlflow_green.measure.meters.rapl_zones import DeviceZones, RaplLayout, ReadText, discover
from mlflow_green.measure.readings import Component, DeviceCounter, Provenance, share_label
from mlflow_green.measure.shares import FloorTracker, UsageDelta, memory_share, split_package

logger = logging.getLogger(__name__)

POWERCAP_ROOT = "/sys/class/powercap"
GUARD_POWER_W = 1000.0
"""Highest package power assumed when choosing how often to read, so a wrap is never missed."""
MIN_POLL_INTERVAL_S = 1.0
MAX_POLL_INTERVAL_S = 60.0
PROCESS_POLL_INTERVAL_S = 1.0
"""Under ``scope="process"``: how often shares are taken (and the idle floor learnt)."""
MIRROR_TOLERANCE_J = 1.0
"""Two counters read one after the other differ by what accrued in between: within this, they mirror."""
SHARES: dict[Component, str] = {"cpu": "cpu-time", "ram": "rss"}
_UJ_PER_J = 1e6


def _read_text(path: Path) -> str:
    return path.read_text(encoding="ascii")


def _permission_reason(path: Path) -> str:
    return (
        f"RAPL: {path} is not readable (kernels restrict energy_uj to root since CVE-2020-8694) — "
        "run as root, or `sudo chmod -R a+r /sys/class/powercap/intel-rapl*`; CPU energy will be estimated"
    )


@dataclass
class _Zone:
    path: Path
    max_range_uj: int | None
    start_uj: int
    last_uj: int
    last_ok_s: float
    total_uj: int = 0
    mean_power_w: float = 0.0
    note: str = ""
    mirror_of: _Zone | None = None  # suspected to mirror another zone: not counted until decided

    @property
    def energy_j(self) -> float:
        return self.total_uj / _UJ_PER_J


@dataclass
class _Device:
    spec: DeviceZones
    label: str
    zones: list[_Zone]
    energy_j: float = 0.0
    floor: FloorTracker = field(default_factory=FloorTracker)

    @property
    def note(self) -> str:
        notes = [z.note for z in self.zones if z.note]
        if self.spec.kind == "psys":
            notes.insert(0, "psys: the whole platform (CPU packages, DRAM, integrated GPU, chipset), no package zone")
        return "; ".join(notes)


class RaplMeter(Meter):
    """Per-socket CPU package and DRAM energy from Linux powercap RAPL ``energy_uj`` counters.

    Args:
        root: The powercap folder (``/sys/class/powercap``; a fake tree in tests).
        read_text: Reads one sysfs file; injectable so tests can simulate ``PermissionError``
            (tests usually run as root, where ``chmod 000`` does not stop reads).
        cpu_times: The machine's cumulative CPU times, for process shares (``procfs.cpu_times``).

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

    def __init__(
        self,
        root: str | os.PathLike[str] = POWERCAP_ROOT,
        *,
        read_text: ReadText | None = None,
        cpu_times: Callable[[], Any] = procfs.cpu_times,
    ) -> None:
        self._root = Path(root)
        self._read = read_text or _read_text
        self._cpu_times = cpu_times
        self._lock = threading.Lock()
        self._devices: list[_Device] = []
        self._opened_at_s: float | None = None
        self._last_s = 0.0
        self._probe: UsageProbe | None = None
        self._usage: Usage | None = None
        self.attribution = Attribution("machine")
        self.poll_interval_s = MAX_POLL_INTERVAL_S

    @property
    def process_scope(self) -> bool:
        """True when this meter bills this process tree's share (``scope="process"``)."""
        return self.attribution.scope == "process"

    def attribute(self, attribution: Attribution) -> None:
        self.attribution = attribution

    def label(self, component: Component, provenance: Provenance) -> str:
        """``rapl-counter``, or ``rapl-counter*cpu-time`` / ``rapl-counter*rss`` for a process share."""
        return share_label(f"{self.name}-{provenance}", SHARES.get(component, "") if self.process_scope else "")

    # -- availability ------------------------------------------------------------------------

    def _read_uj(self, zone: Path) -> int:
        return int(self._read(zone / "energy_uj").strip())

    def _read_max_range_uj(self, zone: Path) -> int | None:
        try:
            value = int(self._read(zone / "max_energy_range_uj").strip())
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return value if value > 0 else None

    def is_available(self) -> Availability:
        try:
            return self._availability()
        except Exception as exc:  # never raise from is_available
            return Availability.no(f"RAPL: cannot read {self._root} ({exc!r}) — CPU energy will be estimated")

    def _availability(self) -> Availability:
        if not self._root.is_dir():
            return Availability.no(f"RAPL: {self._root} not present (VM or container) — CPU energy will be estimated")
        layout = discover(self._root, self._read)
        if not layout.packages:
            return Availability.no(
                f"RAPL: no package, package-die or psys zones under {self._root} (no RAPL driver, or not an x86 "
                "CPU) — CPU energy will be estimated"
            )
        for device in layout.packages:
            for zone in device.zones:
                try:
                    self._read_uj(zone)
                except PermissionError:
                    return Availability.no(_permission_reason(zone / "energy_uj"))
                except (OSError, ValueError, UnicodeDecodeError) as exc:
                    return Availability.no(
                        f"RAPL: cannot read {zone / 'energy_uj'} ({exc}) — CPU energy will be estimated"
                    )
        components: set[Component] = {"cpu"}
        for device in layout.devices:
            if device.component == "ram" and self._readable(device):
                components.add("ram")
        return Availability.yes(self._describe(layout, components), components, "counter")

    def _readable(self, device: DeviceZones) -> bool:
        try:
            for zone in device.zones:
                self._read_uj(zone)
        except (OSError, ValueError, UnicodeDecodeError):
            return False
        return True

    def _describe(self, layout: RaplLayout, components: set[Component]) -> str:
        if layout.packages[0].kind == "psys":
            return (
                f"RAPL: no package zone under {self._root}; reading psys, the whole platform (CPU, DRAM, "
                "integrated GPU, chipset), as the CPU"
            )
        dies = max(len(d.zones) for d in layout.packages)
        what = "package and DRAM" if "ram" in components else "package"
        shape = f"{len(layout.packages)} socket(s)" + (f" of {dies} dies" if dies > 1 else "")
        aside = "; psys (whole platform) not added to them" if layout.psys else ""
        return f"RAPL: {shape}, {what} energy counters under {self._root}{aside}"

    # -- Meter API ---------------------------------------------------------------------------

    def open(self, now_s: float) -> None:
        if not self._root.is_dir():
            raise MeterError(f"RAPL: {self._root} not present")
        try:
            layout = discover(self._root, self._read)
        except OSError as exc:
            raise MeterError(f"RAPL: cannot list {self._root}: {exc}") from exc
        devices = [d for d in (self._open_device(spec, now_s) for spec in layout.devices) if d is not None]
        if not any(d.spec.component == "cpu" for d in devices):
            raise MeterError(f"RAPL: no readable package zone under {self._root}")
        probe = UsageProbe(self.attribution.processes, self._cpu_times) if self.process_scope else None
        try:
            usage = probe.read() if probe is not None else None
        except Exception as exc:
            raise MeterError(f"RAPL: cannot read CPU times for the process share ({exc!r})") from exc
        with self._lock:
            self._devices = devices
            self._opened_at_s = self._last_s = now_s
            self._probe, self._usage = probe, usage
        zones = [z for d in devices for z in d.zones]
        self.poll_interval_s = self._guard_interval_s(zones)
        if self.process_scope:
            self.poll_interval_s = min(self.poll_interval_s, PROCESS_POLL_INTERVAL_S)

    def _open_device(self, spec: DeviceZones, now_s: float) -> _Device | None:
        zones: list[_Zone] = []
        for path in spec.zones:
            try:
                start_uj = self._read_uj(path)
            except PermissionError as exc:
                if spec.component == "cpu":
                    raise MeterError(_permission_reason(path / "energy_uj")) from exc
                logger.warning("RAPL: skipping unreadable DRAM zone %s: %s", path, exc)
                return None
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                if spec.component == "cpu":
                    raise MeterError(f"RAPL: cannot read {path / 'energy_uj'}: {exc}") from exc
                logger.warning("RAPL: skipping unreadable DRAM zone %s: %s", path, exc)
                return None
            zone = _Zone(path, self._read_max_range_uj(path), start_uj, start_uj, now_s)
            zone.mirror_of = next(  # the same counter value as another die's: probably its mirror
                (z for z in zones if start_uj > 0 and abs(start_uj - z.start_uj) <= MIRROR_TOLERANCE_J * _UJ_PER_J),
                None,
            )
            zones.append(zone)
        if spec.kind == "psys":
            label = "platform (psys)"
        else:
            label = hardware.cpu_model() if spec.component == "cpu" else "DRAM"
        return _Device(spec, label, zones)

    @staticmethod
    def _guard_interval_s(zones: list[_Zone]) -> float:
        """Seconds between reads so no counter can wrap twice unseen, even at GUARD_POWER_W."""
        ranges_uj = [z.max_range_uj for z in zones if z.max_range_uj is not None]
        if not ranges_uj:
            return MAX_POLL_INTERVAL_S
        interval_s = min(ranges_uj) / _UJ_PER_J / GUARD_POWER_W
        return min(max(interval_s, MIN_POLL_INTERVAL_S), MAX_POLL_INTERVAL_S)

    def _step(self, zone: _Zone, now_s: float) -> float:
        """Joules one zone accrued since its last read (lock held); extrapolated if it fails."""
        if zone.note:
            return zone.mean_power_w * max(now_s - self._last_s, 0.0)
        try:
            raw_uj = self._read_uj(zone.path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            self._degrade(zone, now_s, exc)
            return zone.mean_power_w * max(now_s - self._last_s, 0.0)
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
        return delta_uj / _UJ_PER_J

    def _degrade(self, zone: _Zone, now_s: float, exc: BaseException) -> None:
        opened_at_s = self._opened_at_s if self._opened_at_s is not None else now_s
        elapsed_s = zone.last_ok_s - opened_at_s
        zone.mean_power_w = zone.energy_j / elapsed_s if elapsed_s > 0 else 0.0
        zone.note = (
            f"RAPL: reading {zone.path / 'energy_uj'} failed after {now_s - opened_at_s:.1f} s ({exc}); "
            f"energy extrapolated at its mean power so far, {zone.mean_power_w:.1f} W"
        )
        logger.warning(zone.note)

    def _device_step(self, device: _Device, now_s: float) -> float:
        """Joules the device accrued since the last read: its zones, each mirror counted once."""
        steps = {id(z): self._step(z, now_s) for z in device.zones}
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

    def _update(self, now_s: float) -> None:
        """Read every zone and bill the interval since the last read (lock held)."""
        duration_s = max(now_s - self._last_s, 0.0)
        usage_delta = None
        if self._probe is not None and self._usage is not None:
            try:
                usage = self._probe.read()
            except Exception as exc:  # the process went away or /proc is unreadable: keep the last share
                logger.debug("RAPL: cannot read CPU times: %s", exc)
                usage = self._usage
            usage_delta = UsageDelta.between(self._usage, usage, duration_s)
            self._usage = usage
        for device in self._devices:
            energy_j = self._device_step(device, now_s)
            if usage_delta is None:
                device.energy_j += energy_j
            elif device.spec.component == "cpu":
                floor_w = device.floor.observe(energy_j, duration_s)
                device.energy_j += split_package(energy_j, duration_s, floor_w, usage_delta)
            else:
                device.energy_j += energy_j * memory_share(usage_delta.rss_bytes, hardware.total_ram_bytes())
        self._last_s = max(now_s, self._last_s)

    def poll(self, now_s: float) -> None:
        """Read every counter so that none wraps twice between two window boundaries."""
        with self._lock:
            if self._opened_at_s is not None:
                self._update(now_s)

    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        with self._lock:
            if self._opened_at_s is None:
                raise MeterError("RAPL: read() before open()")
            self._update(now_s)
            zones = [z for d in self._devices for z in d.zones]
            if all(z.note and z.last_ok_s <= self._opened_at_s for z in zones):
                raise MeterError(f"RAPL: no counter under {self._root} could be read")
            return tuple(self._counter(d) for d in self._devices)

    def _counter(self, device: _Device) -> DeviceCounter:
        failed = any(z.note for z in device.zones)
        component = device.spec.component
        return DeviceCounter(
            device_id=device.spec.device_id,
            component=component,
            energy_j=device.energy_j,
            provenance="estimate" if failed else "counter",
            meter=self.name,
            label=device.label,
            note=device.note,
            scope="process" if self.process_scope else "machine",
            share=SHARES[component] if self.process_scope else "",
        )

    def close(self) -> None:
        with self._lock:
            self._devices = []
            self._opened_at_s = None
            self._probe = self._usage = None
