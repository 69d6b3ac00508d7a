"""Which Linux powercap RAPL zones measure what: packages, dies, DRAM and the platform (``psys``).

Layout read (``/sys/class/powercap``)::

    intel-rapl:0/                 name = package-0         -> cpu:0 (one zone per socket)
    intel-rapl:0/intel-rapl:0:0/  name = core              ignored: part of the package
    intel-rapl:0/intel-rapl:0:1/  name = uncore            ignored: part of the package
    intel-rapl:0/intel-rapl:0:2/  name = dram              -> ram:0 (DRAM is outside the package)
    intel-rapl:1/                 name = psys              the whole platform: never added to packages

On CPUs with several dies per package the kernel names one zone per die
(``intel-rapl:0`` = ``package-0-die-0``, ``intel-rapl:1`` = ``package-0-die-1``, …): the dies of
one socket are summed into ``cpu:N``, except dies that mirror one package-wide counter (some
AMD parts), which are counted once (see :class:`~mlflow_green.measure.meters.rapl.RaplMeter`).
``psys`` covers the packages, DRAM, the integrated GPU and the chipset, so adding it to the
packages would count them twice; it is used only when no package zone exists (``cpu:psys``,
labelled as the whole platform). AMD CPUs (Zen, kernel >= 5.8) appear under the same naming;
zones named ``amd-rapl:N`` are read the same way. ``intel-rapl-mmio:N`` zones repeat a package
counter through MMIO and are ignored.

Example:
    >>> import tempfile
    >>> from mlflow_green.testing import FakePowercapTree
    >>> tree = FakePowercapTree(Path(tempfile.mkdtemp()))
    >>> _ = tree.add_dies(0, 2)
    >>> _ = tree.add_psys()
    >>> layout = discover(tree.root, tree.read_text)
    >>> [(d.device_id, d.kind, len(d.zones)) for d in layout.devices], len(layout.psys)
    ([('cpu:0', 'die', 2)], 1)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlflow_green.measure.readings import Component

ReadText = Callable[[Path], str]

_TOP_ZONE_RE = re.compile(r"^(?:intel|amd)-rapl:(\d+)$")
_PACKAGE_RE = re.compile(r"^package-(\d+)$")
_DIE_RE = re.compile(r"^package-(\d+)-die-(\d+)$")


@dataclass(frozen=True)
class DeviceZones:
    """One device (``cpu:N``, ``ram:N`` or ``cpu:psys``) and the zones whose counters make it up.

    Attributes:
        kind: ``package`` (one zone), ``die`` (one zone per die), ``dram``, or ``psys``.
    """

    device_id: str
    component: Component
    kind: str
    zones: tuple[Path, ...]


@dataclass(frozen=True)
class RaplLayout:
    """What a powercap tree offers: the devices to read, and the ``psys`` zones left aside."""

    devices: tuple[DeviceZones, ...] = ()
    psys: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def packages(self) -> tuple[DeviceZones, ...]:
        """The CPU devices."""
        return tuple(d for d in self.devices if d.component == "cpu")


def _name(read: ReadText, zone: Path) -> str | None:
    try:
        return read(zone / "name").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _dram(read: ReadText, root: Path, zone: Path) -> Path | None:
    """The ``dram`` subzone of a package or die zone; core/uncore subzones are part of the package."""
    pattern = re.compile(rf"^{re.escape(zone.name)}:\d+$")
    candidates = [p for p in zone.iterdir() if pattern.match(p.name)]
    candidates += [p for p in root.iterdir() if pattern.match(p.name)]  # top-level links
    seen: set[Path] = set()
    for sub in sorted(candidates, key=lambda p: p.name):
        resolved = sub.resolve()
        if resolved in seen or not sub.is_dir():
            continue
        seen.add(resolved)
        if _name(read, sub) == "dram":
            return sub
    return None


def discover(root: Path, read: ReadText) -> RaplLayout:
    """The devices under ``root``, in socket order. Raises ``OSError`` if ``root`` cannot be listed."""
    packages: dict[int, Path] = {}
    dies: dict[int, list[tuple[int, Path]]] = {}
    psys: list[Path] = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        match = _TOP_ZONE_RE.match(entry.name)
        if match is None or not entry.is_dir():
            continue
        name = _name(read, entry)
        if name is None:  # unnamed zone: trust the zone index as the socket
            packages.setdefault(int(match.group(1)), entry)
        elif (package := _PACKAGE_RE.match(name)) is not None:
            packages.setdefault(int(package.group(1)), entry)
        elif (die := _DIE_RE.match(name)) is not None:
            dies.setdefault(int(die.group(1)), []).append((int(die.group(2)), entry))
        elif name == "psys":
            psys.append(entry)
    devices: list[DeviceZones] = []
    for socket in sorted(set(packages) | set(dies)):
        if socket in packages:  # a whole-package zone already covers its dies
            zones, kind = (packages[socket],), "package"
        else:
            zones, kind = tuple(z for _, z in sorted(dies[socket])), "die"
        devices.append(DeviceZones(f"cpu:{socket}", "cpu", kind, zones))
        drams = tuple(d for d in (_dram(read, root, z) for z in zones) if d is not None)
        if drams:
            devices.append(DeviceZones(f"ram:{socket}", "ram", "dram", drams))
    if not devices and psys:
        devices.append(DeviceZones("cpu:psys", "cpu", "psys", (psys[0],)))
    return RaplLayout(tuple(devices), tuple(psys))
