"""A phase's running total kept as joules per device, with each device's provenance beside it.

The phase ledger adds parts of every epoch to its phase totals. Adding them as
:class:`~mlflow_green.measure.readings.Measurement` objects builds a new measurement and a new
record per device at every epoch, although the provenance of a device (its meter, basis, share,
scope, note) almost never changes from one epoch to the next. A :class:`PhaseSum` adds the joules
as floats and combines the provenance only when a part brings a different one — by the same rules
as :func:`~mlflow_green.measure.device_merging.combine_devices` (the weaker provenance, the shares
joined, ``process`` scope if any part has it, the first note) — so :meth:`PhaseSum.measurement`
equals the sum of the parts as measurements, device by device, in the same order.

Example:
    >>> from mlflow_green.measure.readings import DeviceEnergy, Measurement
    >>> part = Measurement(2.0, (DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 50.0, 2.0),))
    >>> total = PhaseSum()
    >>> total.add(part)
    >>> total.add(part, fraction=0.5, share="time")
    >>> m = total.measurement()
    >>> m.energy_j, m.duration_s, m.devices[0].basis
    (75.0, 3.0, 'counter, apportioned by time share')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mlflow_green.measure.device_energy import DeviceEnergy, evolve
from mlflow_green.measure.provenance import join_shares, weaker
from mlflow_green.measure.readings import Measurement

DeviceKey = tuple[str, str]
"""(host, device id): how a device is matched across windows of one process."""

class PhaseSum:
    """Joules per device and the duration of one phase's running total.

    Attributes:
        duration_s: Seconds the phase's parts lasted, in all.
        joules: Energy per device (by :data:`DeviceKey`), in the order the devices first came.

    Example:
        >>> from mlflow_green.measure.readings import DeviceEnergy, Measurement
        >>> gpu = DeviceEnergy("gpu:GPU-1", "gpu", "nvml", "counter", 300.0, 1.0, host="h")
        >>> total = PhaseSum.of(Measurement(1.0, (gpu,)))
        >>> total.add(Measurement(1.0, (DeviceEnergy("gpu:GPU-1", "gpu", "nvml", "sampled", 100.0, 1.0, host="h"),)))
        >>> total.joules, total.energy_j, total.measurement().devices[0].provenance
        ({('h', 'gpu:GPU-1'): 400.0}, 400.0, 'sampled')
    """

    def __init__(self) -> None:
        self.duration_s = 0.0
        self.joules: dict[DeviceKey, float] = {}
        self._kinds: dict[DeviceKey, DeviceEnergy] = {}  # each device's provenance (its energy and duration not kept up)

    def add(self, part: Measurement, *, fraction: float = 1.0, share: str = "") -> None:
        """Add ``part`` (times ``fraction``, its devices apportioned by ``share`` if given)."""
        self.add_devices(part.devices, (d.energy_j * fraction for d in part.devices) if fraction != 1.0 else None,
                         duration_s=part.duration_s * fraction if fraction != 1.0 else part.duration_s, share=share)

    def add_devices(self, devices: Iterable[DeviceEnergy], energies_j: Iterable[float] | None, *, duration_s: float,
                    share: str = "") -> None:
        """Add ``devices`` with their energies ``energies_j`` (their own when None) over ``duration_s``."""
        self.duration_s += duration_s
        joules, kinds = self.joules, self._kinds
        for device, energy_j in zip(devices, energies_j, strict=True) if energies_j is not None else ((d, d.energy_j) for d in devices):
            key = (device.host, device.device_id)
            device_share = join_shares(device.share, share) if share else device.share
            kind = kinds.get(key)
            if kind is None:
                joules[key] = energy_j
                kinds[key] = device if device_share == device.share else evolve(device, share=device_share)
                continue
            joules[key] += energy_j
            if (device.provenance != kind.provenance or device_share != kind.share or device.scope != kind.scope
                    or (device.note and not kind.note)):
                kinds[key] = evolve(
                    kind,
                    provenance=weaker(kind.provenance, device.provenance),
                    note=kind.note or device.note,
                    share=join_shares(kind.share, device_share),
                    scope="process" if "process" in (kind.scope, device.scope) else "machine",
                )

    @property
    def energy_j(self) -> float:
        """The phase's energy over every device, in joules."""
        return sum(self.joules.values())

    def measurement(self) -> Measurement:
        """The running total as a measurement (every device's energy over the phase's duration)."""
        duration_s = self.duration_s
        return Measurement(duration_s, tuple(evolve(kind, energy_j=self.joules[key], duration_s=duration_s)
                                             for key, kind in self._kinds.items()))

    @classmethod
    def of(cls, measurement: Measurement) -> PhaseSum:
        """A running total that starts at ``measurement``."""
        total = cls()
        total.add(measurement)
        return total


def joules_by_device(measurements: Iterable[Mapping[DeviceKey, float]]) -> dict[DeviceKey, float]:
    """Per-device joules of several running totals added up (devices in the order they first came)."""
    added: dict[DeviceKey, float] = {}
    for joules in measurements:
        for key, energy_j in joules.items():
            added[key] = added.get(key, 0.0) + energy_j
    return added


__all__ = ["DeviceKey", "PhaseSum", "joules_by_device"]
