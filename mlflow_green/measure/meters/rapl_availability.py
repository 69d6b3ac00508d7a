"""Whether RAPL can be read here, and why not: the answer of ``RaplMeter.is_available()``.

Example:
    >>> import tempfile
    >>> missing = Path(tempfile.mkdtemp()) / "powercap"
    >>> availability(missing, read_ascii, lambda zone: 0).reason.startswith(f"RAPL: {missing} not present")
    True
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mlflow_green.measure.meters.base import Availability
from mlflow_green.measure.meters.rapl_zones import DeviceZones, RaplLayout, ReadText, discover
from mlflow_green.measure.readings import Component


def read_ascii(path: Path) -> str:
    """One sysfs file's text (the default ``read_text`` of the meter)."""
    return path.read_text(encoding="ascii")


def permission_reason(path: Path) -> str:
    """Why an unreadable ``energy_uj`` is unreadable, and what to do."""
    return (
        f"RAPL: {path} is not readable (kernels restrict energy_uj to root since CVE-2020-8694) — "
        "run as root, or `sudo chmod -R a+r /sys/class/powercap/intel-rapl*`; CPU energy will be estimated"
    )


def availability(root: Path, read_text: ReadText, read_uj: Callable[[Path], int]) -> Availability:
    """Whether RAPL can be read under ``root``, which components, and a one-line description."""
    if not root.is_dir():
        return Availability.no(f"RAPL: {root} not present (VM or container) — CPU energy will be estimated")
    layout = discover(root, read_text)
    if not layout.packages:
        return Availability.no(
            f"RAPL: no package, package-die or psys zones under {root} (no RAPL driver, or not an x86 "
            "CPU) — CPU energy will be estimated"
        )
    for device in layout.packages:
        for zone in device.zones:
            try:
                read_uj(zone)
            except PermissionError:
                return Availability.no(permission_reason(zone / "energy_uj"))
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                return Availability.no(
                    f"RAPL: cannot read {zone / 'energy_uj'} ({exc}) — CPU energy will be estimated"
                )
    components: set[Component] = {"cpu"}
    for device in layout.devices:
        if device.component == "ram" and _readable(device, read_uj):
            components.add("ram")
    return Availability.yes(_describe(root, layout, components), components, "counter")


def _readable(device: DeviceZones, read_uj: Callable[[Path], int]) -> bool:
    try:
        for zone in device.zones:
            read_uj(zone)
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return True


def _describe(root: Path, layout: RaplLayout, components: set[Component]) -> str:
    if layout.packages[0].kind == "psys":
        return (
            f"RAPL: no package zone under {root}; reading psys, the whole platform (CPU, DRAM, "
            "integrated GPU, chipset), as the CPU"
        )
    dies = max(len(d.zones) for d in layout.packages)
    what = "package and DRAM" if "ram" in components else "package"
    from mlflow_green.formatting import plural  # only here: the meter's import stays light

    shape = plural(len(layout.packages), "socket") + (f" of {dies} dies" if dies > 1 else "")
    aside = "; psys (whole platform) not added to them" if layout.psys else ""
    return f"RAPL: {shape}, {what} energy counters under {root}{aside}"
