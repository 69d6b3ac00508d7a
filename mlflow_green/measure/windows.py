"""Named windows of a tracker (an epoch, a phase) and how ``meters=`` is split into names and instances.

Example:
    >>> split_meters("nvml, rapl")
    ([], ['nvml', 'rapl'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlflow_green.errors import ConfigError
from mlflow_green.measure.meters.base import Meter
from mlflow_green.measure.readings import Measurement

MeterSpec = str | Meter


@dataclass(frozen=True)
class WindowRecord:
    """A closed window: its name, when it began (seconds after start) and what it measured."""

    name: str
    start_offset_s: float
    measurement: Measurement

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view for ``report.json``."""
        return {"name": self.name, "start_offset_s": self.start_offset_s, **self.measurement.to_dict()}


class WindowResult:
    """Filled in when a :meth:`~mlflow_green.measure.tracker.EnergyTracker.window` block exits."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.measurement: Measurement | None = None


def split_meters(meters: str | Sequence[MeterSpec] | None) -> tuple[list[Meter], list[str]]:
    """``meters=`` as (instances, names).

    Raises:
        ConfigError: for anything but names and :class:`~mlflow_green.measure.meters.base.Meter` instances.
    """
    if meters is None:
        return [], []
    if isinstance(meters, str):
        return [], [m.strip() for m in meters.split(",") if m.strip()]
    if isinstance(meters, Meter):
        return [meters], []
    if not isinstance(meters, Sequence):
        raise ConfigError(
            f"meters= takes meter names ('rapl,estimate' or a list) or Meter instances, got {type(meters).__name__}: {meters!r}"
        )
    injected: list[Meter] = []
    names: list[str] = []
    for item in meters:
        if isinstance(item, Meter):
            injected.append(item)
        elif isinstance(item, str):
            names.append(item)
        else:
            raise ConfigError(f"meters= takes meter names or Meter instances, got {type(item).__name__}: {item!r}")
    return injected, names
