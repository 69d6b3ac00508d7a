"""Windows too short for the counters that measure them.

An energy counter changes only every *update period* (NVML: 20–100 ms depending on the GPU).
A window of a few periods reads whole ticks or none: with a 100 ms counter, half of all 50 ms
windows read 0 J and a 0.25 s window is off by up to ±20 %. Windows shorter than
:data:`MIN_PERIODS` update periods are flagged in report.json and logged once as a warning.

Example:
    >>> from mlflow_green.measure.readings import DeviceEnergy, Measurement
    >>> check = GranularityCheck()
    >>> gpu = DeviceEnergy("gpu:GPU-a", "gpu", "nvml", "counter", 10.0, 0.5)
    >>> check.check(Measurement(0.5, (gpu,)), "epoch 0", {"gpu:GPU-a": 0.1})
    True
    >>> check.coarse[0]["min_duration_s"]
    1.0
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mlflow_green.measure.readings import Measurement

logger = logging.getLogger(__name__)

MIN_PERIODS = 10
"""A window must last at least this many counter update periods to be trusted."""


class GranularityCheck:
    """Collects the windows shorter than ``MIN_PERIODS`` update periods of a device they measure.

    Attributes:
        periods_s: The latest known update period of each device (device id -> seconds).
        coarse: One entry per flagged window (name, duration, devices and their periods).
    """

    def __init__(self) -> None:
        self.periods_s: dict[str, float] = {}
        self.coarse: list[dict[str, Any]] = []
        self._warned = False
        self._passed: list[tuple[Measurement, str]] = []  # checked and not flagged (so far)

    def check(self, measurement: Measurement, name: str, periods_s: Mapping[str, float]) -> bool:
        """Flag ``measurement`` (a window called ``name``) if it is too short; True when flagged."""
        self.periods_s.update(periods_s)
        devices = {
            d.device_id: self.periods_s[d.device_id]
            for d in measurement.devices
            if d.device_id in self.periods_s
            and measurement.duration_s < MIN_PERIODS * self.periods_s[d.device_id] * (1 - 1e-6)  # float slack
        }
        if not devices:
            self._passed.append((measurement, name))
            return False
        min_duration_s = MIN_PERIODS * max(devices.values())
        self.coarse.append(
            {"window": name, "duration_s": measurement.duration_s, "min_duration_s": min_duration_s, "update_period_s": devices}
        )
        if not self._warned:
            self._warned = True
            logger.warning(
                "mlflow-green: window %r lasted %.3g s, less than %d update periods of the energy counter of %s "
                "(%.3g s): its energy is coarse (whole counter ticks). Measure windows of at least %.3g s; "
                "report.json lists every such window.",
                name,
                measurement.duration_s,
                MIN_PERIODS,
                ", ".join(devices),
                max(devices.values()),
                min_duration_s,
            )
        return True

    def recheck(self) -> None:
        """Check again the windows that passed, with the periods known now (learnt after they closed)."""
        passed, self._passed = self._passed, []
        for measurement, name in passed:
            self.check(measurement, name, {})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view for ``report.json``."""
        return {
            "rule": f"windows shorter than {MIN_PERIODS} counter update periods are coarse",
            "update_period_s": dict(self.periods_s),
            "coarse_windows": list(self.coarse),
        }
