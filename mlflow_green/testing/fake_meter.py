"""A fake meter with a scripted power draw, and a helper to register fakes as plugins.

Example:
    >>> from mlflow_green.testing import FakeMeter
    >>> m = FakeMeter(power_w={"gpu:GPU-0": 200.0})
    >>> m.open(0.0)
    >>> m.read(2.0)[0].energy_j
    400.0
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from mlflow_green.errors import MeterError
from mlflow_green.measure.meters.base import Availability, Meter
from mlflow_green.measure.readings import Component, DeviceCounter, Provenance
from mlflow_green.testing.plugin import registered_plugin

PowerSpec = float | Callable[[float], float]


class FakeMeter(Meter):
    """A meter whose devices draw a given power: a constant, or a function of elapsed seconds.

    Args:
        power_w: Device id -> watts (a number, or a function of seconds since ``open()``).
            The component is the part of the id before ``:`` (``gpu``, ``cpu`` or ``ram``).
        name: Meter name (as used in ``meters=[...]`` and in ``green.meters``).
        provenance: ``counter`` (energy computed exactly), ``sampled`` or ``estimate``.
        priority: Selection priority; the default outranks every built-in meter.
        available: Whether ``is_available()`` says yes.
        reason: What ``is_available()`` says.
        fail_after_reads: Raise :class:`MeterError` on every read after this many.
    """

    def __init__(
        self,
        power_w: Mapping[str, PowerSpec],
        *,
        name: str = "fake",
        provenance: Provenance = "counter",
        priority: int = 1000,
        available: bool = True,
        reason: str = "fake meter for tests",
        fail_after_reads: int | None = None,
    ) -> None:
        self.name = name  # type: ignore[misc]
        self.priority = priority  # type: ignore[misc]
        self.description = "scripted power draw for tests"  # type: ignore[misc]
        self._power_w = dict(power_w)
        self._provenance: Provenance = provenance
        self._available = available
        self._reason = reason
        self._fail_after_reads = fail_after_reads
        self._opened_at_s: float | None = None
        self.reads = 0
        self.closed = False

    @staticmethod
    def _component(device_id: str) -> Component:
        return device_id.split(":", 1)[0]  # type: ignore[return-value]

    def is_available(self) -> Availability:
        if not self._available:
            return Availability.no(self._reason)
        return Availability.yes(self._reason, {self._component(d) for d in self._power_w}, self._provenance)

    def open(self, now_s: float) -> None:
        self._opened_at_s = now_s

    def _energy_j(self, spec: PowerSpec, elapsed_s: float) -> float:
        if callable(spec):
            steps = 1000
            dt = elapsed_s / steps
            return sum(spec((i + 0.5) * dt) * dt for i in range(steps))
        return float(spec) * elapsed_s

    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        if self._opened_at_s is None:
            raise MeterError(f"{self.name}: read() before open()")
        self.reads += 1
        if self._fail_after_reads is not None and self.reads > self._fail_after_reads:
            raise MeterError(f"{self.name}: scripted failure on read {self.reads}")
        elapsed_s = max(now_s - self._opened_at_s, 0.0)
        return tuple(
            DeviceCounter(
                device_id=device_id,
                component=self._component(device_id),
                energy_j=self._energy_j(spec, elapsed_s),
                provenance=self._provenance,
                meter=self.name,
                label=f"fake {device_id}",
            )
            for device_id, spec in self._power_w.items()
        )

    def close(self) -> None:
        self.closed = True


class PerReadMeter(FakeMeter):
    """Each counter read adds ``step_j`` joules to the CPU: energy that depends only on how
    often the tracker reads, not on time — deterministic budgets and projections in tests.

    Example:
        >>> m = PerReadMeter(10.0)
        >>> m.open(0.0)
        >>> [m.read(0.0)[0].energy_j, m.read(0.0)[0].energy_j]
        [10.0, 20.0]
    """

    def __init__(self, step_j: float, *, name: str = "per-read") -> None:
        super().__init__({"cpu:0": 0.0, "ram:0": 0.0}, name=name)
        self.step_j = step_j

    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        self.reads += 1
        return (
            DeviceCounter("cpu:0", "cpu", self.step_j * self.reads, "counter", self.name),
            DeviceCounter("ram:0", "ram", 0.0, "counter", self.name),
        )


@contextlib.contextmanager
def registered_meters(*factories: Callable[[], Meter]) -> Iterator[Any]:
    """Register meter factories as a plugin for the duration of a ``with`` block.

    This goes through the same pluggy hook a third-party package uses.

    Example:
        >>> from functools import partial
        >>> from mlflow_green.plugins import meter_factories
        >>> with registered_meters(partial(FakeMeter, {"cpu:0": 10.0}, name="bench")):
        ...     "bench" in meter_factories()
        True
    """
    with registered_plugin("register_meters", *factories) as plugin:
        yield plugin
