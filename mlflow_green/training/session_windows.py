"""The windows of a training session inside a fit: where an epoch starts, and measured phases.

Each boundary costs a meter read on the training thread, so two are saved where nothing can
happen between: an epoch that begins at most :data:`EPOCH_GAP_S` after the previous one ended
starts at that end's reading, and a phase that the epoch's end follows at once (Keras's
validation; Lightning's after the epoch's last batch) is closed by the epoch's end reading.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_green.measure.readings import Measurement, Snapshot
from mlflow_green.training.phases import EMPTY

if TYPE_CHECKING:
    from mlflow_green.training.session import TrainingSession

EPOCH_GAP_S = 0.005
"""An epoch that begins at most this long after the previous one ended (nothing ran between but the
callbacks' own epoch-end work and the loop's bookkeeping) starts at that end's snapshot, without a
meter read of its own; the gap's energy goes to ``other`` by its share of the epoch's time (like the
data phase's). A longer gap — a checkpoint written, another callback's work — is read as usual."""


class WindowsMixin:
    """The epoch-window and phase methods of a training session."""

    def _start_epoch_window(self: TrainingSession) -> None:
        """The current epoch's start: the previous epoch's end reading after a short gap, else a read now."""
        assert self.tracker is not None
        previous, self._last_epoch_end = self._last_epoch_end, None
        gap_s = self.tracker.clock_s() - previous.timestamp_s if previous is not None else -1.0
        if previous is not None and 0 <= gap_s <= EPOCH_GAP_S:
            self._epoch_start = previous  # only our own epoch-end work ran since: no meter read
            self.ledger.begin_epoch(gap_s)
        else:
            self._epoch_start = self.tracker.snapshot()
            self.ledger.begin_epoch()

    def begin_phase(self: TrainingSession, phase: str) -> None:
        """A measured phase starts (``validation`` inside a fit, ``test`` or ``predict``)."""
        if self.tracker is not None and self.tracker.running:
            self._close_ending_phase()
            self._last_epoch_end = None  # measured work between epochs: the next one reads the meters
            self.tracker.begin(phase)

    def end_phase(self: TrainingSession, phase: str, *, samples: int | None = None, at_epoch_end: bool = False) -> Measurement:
        """A measured phase ends; returns its (local) measurement. ``samples`` are this rank's.

        With ``at_epoch_end=True`` (Keras's validation, which the epoch's end follows with nothing
        but the other callbacks' ``on_test_end`` in between) the phase is closed by the epoch's end
        snapshot instead of one of its own, and EMPTY is returned: one meter read fewer per epoch.
        Any other call that opens or closes a window first closes it there and then.
        """
        if self.tracker is None or not self.tracker.running:
            return EMPTY
        self._close_ending_phase()
        if at_epoch_end and self._epoch_start is not None:
            self._phase_ending = (phase, samples)
            return EMPTY
        return self._closed_phase(phase, samples, self.tracker.end(phase))

    def _close_ending_phase(self: TrainingSession, at: Snapshot | None = None) -> None:
        """Close the phase left to end with the epoch (see :meth:`end_phase`), at ``at`` or now."""
        ending, self._phase_ending = self._phase_ending, None
        if ending is not None and self.tracker is not None and self.tracker.running:
            phase, samples = ending
            self._closed_phase(phase, samples, self.tracker.end(phase, at=at))

    def _closed_phase(self: TrainingSession, phase: str, samples: int | None, measurement: Measurement) -> Measurement:
        if phase == "validation" and self._epoch_start is not None:
            self.ledger.add_validation(measurement)
        self.count(phase, samples)
        return measurement

    def count(self: TrainingSession, phase: str, samples: int | None) -> None:
        """This rank saw ``samples`` more samples in ``phase`` (summed over ranks at the next epoch end)."""
        if samples:
            self._counts[phase] = self._counts.get(phase, 0) + int(samples)
