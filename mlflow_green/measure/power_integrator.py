"""Trapezoidal integration of power samples into energy, thread-safe.

Example:
    >>> p = PowerIntegrator()
    >>> for t, w in [(0.0, 100.0), (1.0, 100.0), (2.0, 300.0)]:
    ...     p.add(t, w)
    >>> p.energy_j
    300.0
"""

from __future__ import annotations

import threading


class PowerIntegrator:
    """Accumulates energy from (time, power) samples with the trapezoidal rule.

    Samples must come in non-decreasing time order; an out-of-order sample is ignored.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_t_s: float | None = None
        self._last_power_w = 0.0
        self._energy_j = 0.0
        self.samples = 0

    def add(self, t_s: float, power_w: float) -> None:
        """Add one sample of ``power_w`` watts taken at monotonic time ``t_s``."""
        with self._lock:
            if self._last_t_s is not None:
                dt = t_s - self._last_t_s
                if dt < 0:
                    return
                self._energy_j += 0.5 * (power_w + self._last_power_w) * dt
            self._last_t_s = t_s
            self._last_power_w = power_w
            self.samples += 1

    def extend_to(self, t_s: float) -> None:
        """Carry the last known power forward to ``t_s`` (when a fresh sample is unavailable)."""
        with self._lock:
            if self._last_t_s is None or t_s <= self._last_t_s:
                return
            self._energy_j += self._last_power_w * (t_s - self._last_t_s)
            self._last_t_s = t_s

    @property
    def energy_j(self) -> float:
        """Energy integrated so far, in joules."""
        with self._lock:
            return self._energy_j

    @property
    def last_power_w(self) -> float:
        """The most recent power sample, in watts."""
        with self._lock:
            return self._last_power_w
