"""Where the energy of a fit went: the phase split of each epoch, and the running phase totals.

Within an epoch, validation is measured by counters (its own window); the data phase (time the
loop waited on input, reported by the adapter) is apportioned the energy of the non-validation
part of the epoch by its share of that time — counters are not read per batch, which would cost
more than the overhead budget — and labelled so (``share="time"``); train is the rest. An epoch
that starts at the previous epoch's end snapshot (the gap between them was only the callbacks'
own epoch-end work, see :data:`~mlflow_green.training.session_windows.EPOCH_GAP_S`) leaves that gap's
share of time to ``other``, the same way.

Example:
    >>> from mlflow_green.measure.readings import DeviceEnergy, Measurement
    >>> ledger = PhaseLedger()
    >>> ledger.begin_epoch()
    >>> ledger.add_data_wait(2.0)
    >>> epoch = Measurement(10.0, (DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 100.0, 10.0),))
    >>> split = ledger.end_epoch(epoch, validation=Measurement(0.0))
    >>> round(split["data"], 6), round(split["train"], 6)
    (20.0, 80.0)
    >>> ledger.totals()["data"].devices[0].basis
    'counter, apportioned by time share'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mlflow_green.measure.readings import Measurement, Snapshot
from mlflow_green.training.phase_sums import DeviceKey, PhaseSum, joules_by_device

EMPTY = Measurement(0.0, ())
"""A measurement of nothing (the neutral element of ``+``)."""

FIT_PHASES = ("train", "validation", "data")
"""The phases a fit's epochs are split into."""

OTHER = "other"
"""The rest of a fit's total: setup, teardown, the gaps between epochs, the callback's own work."""


class PhaseLedger:
    """Phase totals of the fits logged into one run, and the bookkeeping of the current epoch.

    Attributes:
        carried: Phase totals of earlier fits in the same run (and of a resumed checkpoint).
        current: Phase totals of the fit in progress.
        data_wait_s: Seconds the loop waited on input in the current epoch.
    """

    def __init__(self) -> None:
        self._carried: dict[str, Measurement] = {}
        self._carried_j: dict[str, dict[DeviceKey, float]] = {}
        self._current: dict[str, PhaseSum] = {}
        self.data_wait_s = 0.0
        self.gap_s = 0.0
        self._validation_windows: list[tuple[Snapshot, Snapshot]] = []

    # -- one epoch -----------------------------------------------------------------------------
    def begin_epoch(self, gap_s: float = 0.0) -> None:
        """An epoch starts: no validation and no input wait yet. ``gap_s``: seconds of its window
        before it really started (from the previous epoch's end), left to ``other``."""
        self._validation_windows: list[tuple[Snapshot, Snapshot]] = []
        self.data_wait_s = 0.0
        self.gap_s = max(float(gap_s), 0.0)

    def add_data_wait(self, seconds: float) -> None:
        """Time the training loop waited for its next batch (hot path: arithmetic only)."""
        self.data_wait_s += seconds

    def add_validation(self, begin: Snapshot, end: Snapshot) -> None:
        """A validation window inside the current epoch, by its readings (measured when needed)."""
        self._validation_windows.append((begin, end))

    @property
    def validation_windows(self) -> tuple[tuple[Snapshot, Snapshot], ...]:
        """The readings of the validation windows of the current epoch (this rank's)."""
        return tuple(self._validation_windows)

    @property
    def epoch_validation(self) -> Measurement:
        """The validation measured in the current epoch (this rank's)."""
        return validation_of(self._validation_windows)

    def end_epoch(self, epoch: Measurement, *, validation: Measurement, after: Measurement = EMPTY,
                  data_wait_s: float | None = None, gap_s: float | None = None) -> dict[str, float]:
        """Split ``epoch`` (all ranks) into validation, data and train; add them to the fit's totals.

        ``after`` is the measured stretch after the epoch's last validation with no training in it
        (another callback's epoch-end work). It and the epoch's gap (see :meth:`begin_epoch`) are in
        the returned split as ``other`` and are not added: ``other`` is whatever the fit phases
        leave of the total. ``data_wait_s`` and ``gap_s`` default to the current epoch's (an epoch
        accounted for later passes those it had). Returns the joules of each part of the epoch.

        The rest of the epoch (``epoch - validation - after``, device by device) is apportioned as
        floats: the same numbers as the measurements' arithmetic, without building them.
        """
        data_wait_s = self.data_wait_s if data_wait_s is None else data_wait_s
        gap_s = self.gap_s if gap_s is None else gap_s
        taken = _joules(validation)
        after_j = _joules(after)
        rest_j = [max(max(d.energy_j - taken.get((d.host, d.device_id), 0.0), 0.0) - after_j.get((d.host, d.device_id), 0.0), 0.0)
                  for d in epoch.devices]
        rest_s = max(max(epoch.duration_s - validation.duration_s, 0.0) - after.duration_s, 0.0)
        data_share = gap_share = 0.0
        if rest_s > 0:
            data_share = min(data_wait_s / rest_s, 1.0)
            gap_share = min(gap_s / rest_s, 1.0 - data_share)
        train_share = 1.0 - data_share - gap_share
        self._sum("validation").add(validation)
        self._sum("data").add_devices(epoch.devices, [j * data_share for j in rest_j], duration_s=rest_s * data_share, share="time")
        self._sum("train").add_devices(epoch.devices, [j * train_share for j in rest_j], duration_s=rest_s * train_share, share="time")
        rest_total_j = sum(rest_j)
        split = {"validation": validation.energy_j, "data": rest_total_j * data_share, "train": rest_total_j * train_share}
        if gap_share > 0 or after.devices:
            split[OTHER] = rest_total_j * gap_share + after.energy_j
        return split

    # -- totals --------------------------------------------------------------------------------
    @property
    def current(self) -> dict[str, Measurement]:
        """Phase totals of the fit in progress."""
        return {phase: total.measurement() for phase, total in self._current.items()}

    @current.setter
    def current(self, phases: Mapping[str, Measurement]) -> None:
        self._current = {phase: PhaseSum.of(m) for phase, m in phases.items()}

    @property
    def carried(self) -> dict[str, Measurement]:
        """Phase totals of earlier fits in the same run (and of a resumed checkpoint)."""
        return dict(self._carried)

    @carried.setter
    def carried(self, phases: Mapping[str, Measurement]) -> None:
        self._carried = dict(phases)
        self._carried_j = {phase: _joules(m) for phase, m in self._carried.items()}

    def add(self, phase: str, measurement: Measurement) -> None:
        """Add ``measurement`` to the current fit's ``phase``."""
        self._sum(phase).add(measurement)

    def totals(self) -> dict[str, Measurement]:
        """Every phase's running total over the run: earlier fits plus the current one."""
        phases = dict(self._carried)
        for phase, total in self._current.items():
            phases[phase] = phases.get(phase, EMPTY) + total.measurement()
        return phases

    def fit_phase_totals(self) -> dict[str, Measurement]:
        """The running totals of the fit phases only (train, validation, data)."""
        return {p: m for p, m in self.totals().items() if p in FIT_PHASES}

    def with_other(self, total: Measurement) -> dict[str, Measurement]:
        """The fit phases' running totals plus ``other`` = ``total`` minus them, device by device.

        ``total`` is the run's running total at the same instant (all ranks), so the four phases
        always add up to it.
        """
        phases = {phase: EMPTY for phase in FIT_PHASES} | self.fit_phase_totals()  # a fit that ended in its first epoch too
        other = total
        for measurement in phases.values():
            other = other - measurement
        phases[OTHER] = Measurement(other.duration_s, other.devices)
        return phases

    def energy_with_other_j(self, total: Measurement) -> dict[str, float]:
        """The joules of :meth:`with_other`'s phases (the same sums), without building the measurements.

        Example:
            >>> from mlflow_green.measure.readings import DeviceEnergy
            >>> cpu = lambda j, s: Measurement(s, (DeviceEnergy("cpu:0", "cpu", "rapl", "counter", j, s),))
            >>> ledger = PhaseLedger()
            >>> ledger.begin_epoch()
            >>> ledger.end_epoch(cpu(80.0, 4.0), validation=cpu(20.0, 1.0))
            {'validation': 20.0, 'data': 0.0, 'train': 60.0}
            >>> ledger.energy_with_other_j(cpu(100.0, 5.0))
            {'train': 60.0, 'validation': 20.0, 'data': 0.0, 'other': 20.0}
        """
        by_phase: dict[str, Mapping[DeviceKey, float]] = {}
        for phase in FIT_PHASES:
            current = self._current.get(phase)
            carried = self._carried_j.get(phase)
            if carried is None:
                by_phase[phase] = current.joules if current is not None else {}
            else:
                by_phase[phase] = joules_by_device((carried, current.joules)) if current is not None else carried
        phases_j = {phase: sum(joules.values()) for phase, joules in by_phase.items()}
        parts = list(by_phase.values())
        other_j = 0.0
        for device in total.devices:
            key, left_j = (device.host, device.device_id), device.energy_j
            for joules in parts:
                if joules:
                    left_j = max(left_j - joules.get(key, 0.0), 0.0)
            other_j += left_j
        phases_j[OTHER] = other_j
        return phases_j

    def close_fit(self) -> None:
        """The fit ended: its phases join the carried totals."""
        self.carried = self.totals()
        self._current = {}

    def reset(self, carried: Mapping[str, Measurement] | None = None) -> None:
        """Start over (a new run), optionally from a checkpoint's phase totals."""
        self.carried = dict(carried or {})
        self._current = {}

    def _sum(self, phase: str) -> PhaseSum:
        total = self._current.get(phase)
        if total is None:
            total = self._current[phase] = PhaseSum()
        return total


def _joules(measurement: Measurement) -> dict[DeviceKey, float]:
    """Per-device joules of one measurement (a device listed twice counts once, as in ``-``)."""
    return {(d.host, d.device_id): d.energy_j for d in measurement.devices}


def validation_of(windows: Iterable[tuple[Snapshot, Snapshot]]) -> Measurement:
    """The validation windows of an epoch, by their (begin, end) readings, as one measurement."""
    total = EMPTY
    for begin, end in windows:
        total = total + (end - begin)
    return total
