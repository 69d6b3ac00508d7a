"""Per-device sanity of cumulative readings: a device that reads nonsense is quarantined alone.

A counter that goes backwards (reset by a driver reload) or jumps by an impossible amount is
*rebased*: the energy between its last good reading and now is extrapolated at its mean power
(labelled ``estimate``), and it counts on from its new value — the other devices of the same
meter are untouched. A reading that is not a number is skipped (the device is extrapolated for
that snapshot) and the device is read again at the next one. Only the measured part of a reading
(``energy_j - estimated_j``) must never decrease: a meter may replace its own extrapolation by
the true value once a device answers again.

Example:
    >>> from mlflow_green.measure.readings import DeviceCounter
    >>> guard = DeviceGuard(start_s=0.0)
    >>> reading = lambda j: DeviceCounter("gpu:GPU-a", "gpu", j, "counter", "nvml")
    >>> guard.check(reading(100.0), 1.0)[0].energy_j
    100.0
    >>> checked, fault = guard.check(reading(5.0), 2.0)  # the counter restarted
    >>> checked.energy_j, checked.provenance
    (200.0, 'estimate')
    >>> guard.check(reading(15.0), 3.0)[0].energy_j  # counts on from its new value
    210.0
"""

from __future__ import annotations

import math
from dataclasses import replace

from mlflow_green.measure.readings import DeviceCounter

MAX_PLAUSIBLE_POWER_W = 5000.0
"""No single device (a GPU, a CPU socket, a host's RAM) draws more: a reading implying more is
nonsense."""


class DeviceGuard:
    """Checks each device's cumulative readings; rebases a device whose counter reset or jumped.

    Args:
        start_s: When measurement started (for mean power).
    """

    def __init__(self, start_s: float) -> None:
        self.start_s = start_s
        self.last_good: dict[tuple[str, str], tuple[float, DeviceCounter]] = {}
        self._offsets: dict[tuple[str, str], tuple[float, float]] = {}

    @property
    def rebased(self) -> bool:
        """Whether some device's counter was rebased (its readings are the meter's plus an offset)."""
        return bool(self._offsets)

    def check(self, reading: DeviceCounter, now_s: float) -> tuple[DeviceCounter | None, str]:
        """The reading to use (None: nothing usable yet) and a fault message ("" when sane).

        Devices are told apart by meter too: a meter that takes over a device counts from zero.
        """
        key = (reading.meter, reading.device_id)
        energy_j = reading.energy_j
        if not isinstance(energy_j, (int, float)) or math.isnan(energy_j) or math.isinf(energy_j) or energy_j < 0:
            seen = self.last_good.get(key)
            fault = f"{reading.device_id}: energy {energy_j!r} J is not a number of joules; read again at the next window"
            if seen is None:
                return None, fault
            return self._extrapolated(seen[1], seen[0], now_s, fault), fault
        offset_j, offset_est_j = self._offsets.get(key, (0.0, 0.0))
        if offset_j or offset_est_j:
            reading = replace(reading, energy_j=energy_j + offset_j, estimated_j=reading.estimated_j + offset_est_j)
        seen = self.last_good.get(key)
        fault = self._nonsense(reading, seen, now_s)
        if fault and seen is not None:
            rebased = self._extrapolated(seen[1], seen[0], now_s, fault)
            self._offsets[key] = (
                rebased.energy_j - (reading.energy_j - offset_j),
                rebased.estimated_j - (reading.estimated_j - offset_est_j),
            )
            reading = rebased
        self.last_good[key] = (now_s, reading)
        return reading, fault

    @staticmethod
    def _nonsense(reading: DeviceCounter, seen: tuple[float, DeviceCounter] | None, now_s: float) -> str:
        if seen is None:
            return ""
        seen_s, last = seen
        measured_drop_j = (last.energy_j - last.estimated_j) - (reading.energy_j - reading.estimated_j)
        if measured_drop_j > 1e-6:
            return (
                f"{reading.device_id}: cumulative energy went backwards by {measured_drop_j:.3g} J (counter reset?); "
                "counting on from its new value, the gap extrapolated"
            )
        # Counters tick coarsely (NVML every ~20-100 ms): judge power over at least one second.
        power_w = (reading.energy_j - last.energy_j) / max(now_s - seen_s, 1.0)
        if power_w > MAX_PLAUSIBLE_POWER_W:
            return (
                f"{reading.device_id}: {power_w:.3g} W is not plausible (more than {MAX_PLAUSIBLE_POWER_W:g} W "
                "for one device); counting on from its new value, the gap extrapolated"
            )
        return ""

    def _extrapolated(self, last: DeviceCounter, seen_s: float, now_s: float, why: str) -> DeviceCounter:
        """``last`` carried from ``seen_s`` to ``now_s`` at its mean power so far, as an estimate."""
        elapsed_s = seen_s - self.start_s
        power_w = last.energy_j / elapsed_s if elapsed_s > 0 else 0.0
        gap_j = power_w * max(now_s - seen_s, 0.0)
        return replace(
            last,
            energy_j=last.energy_j + gap_j,
            estimated_j=last.estimated_j + gap_j,
            provenance="estimate",
            note=f"{why.split(': ', 1)[-1]}; extrapolated at its mean power of {power_w:.1f} W",
        )
