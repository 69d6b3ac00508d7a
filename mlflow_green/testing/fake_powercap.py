"""A fake Linux powercap (RAPL) tree in a temporary folder, for testing RAPL energy reading.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from mlflow_green.measure.meters.rapl import RaplMeter
    >>> tree = FakePowercapTree(Path(tempfile.mkdtemp()))
    >>> tree.add_socket(0, max_energy_range_uj=1_000_000_000)
    >>> meter = RaplMeter(tree.root, read_text=tree.read_text)
    >>> meter.open(0.0)
    >>> tree.advance(0, package_j=900.0)
    >>> meter.poll(1.0)
    >>> tree.advance(0, package_j=300.0)  # the 1000 J counter wraps
    >>> meter.read(2.0)[0].energy_j
    1200.0
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

DEFAULT_MAX_ENERGY_RANGE_UJ = 262_143_328_850
"""The range most Intel packages report (about 262 kJ)."""

_UJ_PER_J = 1_000_000


class FakePowercapTree:
    """Builds ``/sys/class/powercap``-style zones under ``root`` and scripts their counters.

    Each socket gets a package zone ``intel-rapl:N`` (name ``package-N``) with a ``core``
    subzone (which a RAPL reader must ignore) and optionally a ``dram`` subzone, plus the
    top-level ``intel-rapl:N:M`` links that the real sysfs has. Multi-die CPUs get one zone per
    die instead (:meth:`add_dies`: ``package-N-die-D``, numbered in order like the kernel does),
    either independent counters or mirrors of one package counter (as some AMD parts expose);
    :meth:`add_psys` adds the whole-platform ``psys`` zone.

    Args:
        root: An empty folder (e.g. pytest's ``tmp_path``); created if missing.
        prefix: Zone prefix: ``intel-rapl`` (Intel, and AMD on Linux >= 5.8) or ``amd-rapl``.

    Example:
        >>> import tempfile
        >>> tree = FakePowercapTree(Path(tempfile.mkdtemp()))
        >>> tree.add_socket(1, energy_uj=5, dram=False)
        >>> tree.energy_uj(tree.package_zone(1))
        5
    """

    def __init__(self, root: Path, *, prefix: str = "intel-rapl") -> None:
        self.root = Path(root)
        self.prefix = prefix
        self.root.mkdir(parents=True, exist_ok=True)
        control = self.root / prefix
        control.mkdir(exist_ok=True)
        (control / "enabled").write_text("1\n")
        self.denied: set[Path] = set()
        self.mirrored_sockets: set[int] = set()

    # -- building ----------------------------------------------------------------------------

    def _zone(self, path: Path, name: str, energy_uj: int, max_energy_range_uj: int) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        (path / "name").write_text(f"{name}\n")
        (path / "energy_uj").write_text(f"{energy_uj}\n")
        (path / "max_energy_range_uj").write_text(f"{max_energy_range_uj}\n")
        (path / "enabled").write_text("1\n")
        return path

    def add_socket(
        self,
        index: int,
        energy_uj: int = 0,
        max_energy_range_uj: int = DEFAULT_MAX_ENERGY_RANGE_UJ,
        dram: bool = True,
        dram_energy_uj: int = 0,
    ) -> None:
        """Add one CPU socket: its package zone, a ``core`` subzone and optionally ``dram``."""
        package = self._zone(self.package_zone(index), f"package-{index}", energy_uj, max_energy_range_uj)
        subzones = [("core", 0)] + ([("dram", dram_energy_uj)] if dram else [])
        for sub, (name, uj) in enumerate(subzones):
            zone = self._zone(package / f"{package.name}:{sub}", name, uj, max_energy_range_uj)
            link = self.root / zone.name
            if not link.exists():
                link.symlink_to(zone, target_is_directory=True)

    def add_psys(self, index: int | None = None, energy_uj: int = 0) -> Path:
        """Add a top-level ``psys`` (whole platform) zone, which overlaps the packages."""
        index = self._next_index() if index is None else index
        return self._zone(self.root / f"{self.prefix}:{index}", "psys", energy_uj, DEFAULT_MAX_ENERGY_RANGE_UJ)

    def add_dies(
        self,
        socket: int,
        dies: int,
        *,
        mirrored: bool = False,
        energy_uj: int = 0,
        dram: bool = False,
        max_energy_range_uj: int = DEFAULT_MAX_ENERGY_RANGE_UJ,
    ) -> list[Path]:
        """Add one socket as ``dies`` zones named ``package-S-die-D`` at the next free zone indices.

        Args:
            mirrored: Every die reports the same package-wide counter (so reading all of them
                would count the package ``dies`` times), instead of its own die's energy.
            energy_uj: Starting value of every die's counter (mirrors share it; independent dies
                get ``energy_uj + die`` so they never hold the same value by accident).
        """
        zones = []
        for die in range(dies):
            start_uj = energy_uj if mirrored else energy_uj + die * 1_000_003
            zone = self._zone(
                self.root / f"{self.prefix}:{self._next_index()}", f"package-{socket}-die-{die}", start_uj,
                max_energy_range_uj,
            )
            if dram:
                self._zone(zone / f"{zone.name}:0", "dram", 0, max_energy_range_uj)
            zones.append(zone)
        if mirrored:
            self.mirrored_sockets.add(socket)
        return zones

    def _next_index(self) -> int:
        taken = [int(p.name.rsplit(":", 1)[1]) for p in self.root.glob(f"{self.prefix}:*") if p.name.count(":") == 1]
        return max(taken, default=-1) + 1

    # -- addressing --------------------------------------------------------------------------

    def package_zone(self, socket: int) -> Path:
        """The package zone folder of one socket (added with :meth:`add_socket`)."""
        return self.root / f"{self.prefix}:{socket}"

    def die_zone(self, socket: int, die: int) -> Path:
        """The zone folder of one die (added with :meth:`add_dies`)."""
        return self.zone_named(f"package-{socket}-die-{die}")

    def zone_named(self, name: str) -> Path:
        """The top-level zone whose ``name`` file says ``name`` (``psys``, ``package-0-die-1``)."""
        for zone in sorted(self.root.glob(f"{self.prefix}:*")):
            if zone.name.count(":") == 1 and (zone / "name").read_text().strip() == name:
                return zone
        raise KeyError(f"no zone named {name!r}")

    def dram_zone(self, socket: int) -> Path:
        """The DRAM subzone folder of one socket (it must have been added with ``dram=True``)."""
        package = self.package_zone(socket)
        for zone in sorted(package.glob(f"{package.name}:*")):
            if (zone / "name").read_text().strip() == "dram":
                return zone
        raise KeyError(f"socket {socket} has no dram zone")

    def _path(self, zone: Path | str) -> Path:
        path = Path(zone)
        return path if path.is_absolute() else self.root / path

    # -- scripting counters ------------------------------------------------------------------

    def energy_uj(self, zone: Path | str) -> int:
        """The raw ``energy_uj`` value of a zone."""
        return int((self._path(zone) / "energy_uj").read_text())

    def max_energy_range_uj(self, zone: Path | str) -> int:
        """The ``max_energy_range_uj`` of a zone."""
        return int((self._path(zone) / "max_energy_range_uj").read_text())

    def set_energy(self, zone: Path | str, uj: int) -> None:
        """Set a zone's raw ``energy_uj`` counter (no wraparound applied)."""
        (self._path(zone) / "energy_uj").write_text(f"{int(uj)}\n")

    def _add(self, zone: Path, energy_j: float) -> None:
        if energy_j < 0:
            raise ValueError("energy only increases")
        max_uj = self.max_energy_range_uj(zone)
        self.set_energy(zone, (self.energy_uj(zone) + round(energy_j * _UJ_PER_J)) % max_uj)

    def advance(self, socket: int, package_j: float = 0.0, dram_j: float = 0.0) -> None:
        """Add energy to a socket's counters, wrapping modulo ``max_energy_range_uj``."""
        self._add(self.package_zone(socket), package_j)
        if dram_j:
            self._add(self.dram_zone(socket), dram_j)

    def advance_dies(self, socket: int, die_j: list[float]) -> None:
        """Add energy to each die of a socket (a mirrored socket's dies all add the sum)."""
        dies = sorted(self.root.glob(f"{self.prefix}:*"), key=lambda p: int(p.name.rsplit(":", 1)[1]))
        zones = [z for z in dies if (z / "name").read_text().strip().startswith(f"package-{socket}-die-")]
        for die, zone in enumerate(zones):
            self._add(zone, sum(die_j) if socket in self.mirrored_sockets else die_j[die])

    def advance_zone(self, zone: Path | str, energy_j: float) -> None:
        """Add energy to any zone's counter (``psys``, one die), wrapping like the hardware."""
        self._add(self._path(zone), energy_j)

    # -- permissions -------------------------------------------------------------------------

    def make_unreadable(self, zone: Path | str) -> None:
        """Make a zone's ``energy_uj`` unreadable, as non-root users see it on recent kernels.

        The file is chmod 000, which root ignores, so the path is also recorded in
        :attr:`denied`; pass :meth:`read_text` to the meter to see ``PermissionError`` as root.
        """
        path = self._path(zone) / "energy_uj"
        os.chmod(path, 0)
        self.denied.add(path.resolve())

    def read_text(self, path: Path) -> str:
        """Read a file of the tree as a meter would, raising ``PermissionError`` for denied files."""
        path = Path(path)
        if path.resolve() in self.denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return path.read_text(encoding="ascii")
