"""The windows of a training session inside a fit: where an epoch starts, and measured phases.

Each boundary costs a meter read on the training thread, so two are saved where nothing but the
loop's bookkeeping and the callbacks' own work can happen between: an epoch that begins at most
:data:`EPOCH_GAP_S` after the previous one ended starts at that end's reading, and an epoch that
ends at most that long after its last validation (Keras's; Lightning's after the epoch's last
batch) ends at the validation's reading — with no validation, at the reading taken as the epoch's end
hooks begin (:meth:`WindowsMixin.training_ended`). A longer stretch is read, and billed to ``other``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mlflow_green.errors import TrackerStateError
from mlflow_green.measure.readings import Measurement, Snapshot
from mlflow_green.training.phases import EMPTY

if TYPE_CHECKING:
    from mlflow_green.training.session import TrainingSession

logger = logging.getLogger(__name__)

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
        now_s = self.tracker.clock_s()
        if previous is not None and 0 <= now_s - self._last_epoch_end_s <= EPOCH_GAP_S:
            self._epoch_start = previous  # only our own epoch-end work ran since: no meter read
            self._ledger.begin_epoch(now_s - previous.timestamp_s)
        else:
            self._epoch_start = self.tracker.mark()
            self._ledger.begin_epoch()

    def begin_phase(self: TrainingSession, phase: str) -> None:
        """A measured phase starts (``validation`` inside a fit, ``test`` or ``predict``)."""
        tracker = self.tracker
        if tracker is None:
            return
        try:
            tracker.begin(phase)  # inside an epoch: worked out with the phase's end reading
        except TrackerStateError:  # not running
            return
        self._last_epoch_end = None  # measured work between epochs: the next one reads the meters
        self._work_end = None  # nor does the epoch's end reuse an earlier validation's reading

    def end_phase(self: TrainingSession, phase: str, *, samples: int | None = None, ends_epoch: bool = False) -> Measurement | None:
        """A measured phase ends; returns its (local) measurement. ``samples`` are this rank's.

        A validation inside an epoch returns None: it is measured with its epoch's accounting, off
        the training thread (its readings are kept).

        ``ends_epoch=True``: no training follows it in this epoch (Keras's validation; Lightning's after
        the epoch's last batch). The epoch's end then reuses this reading if it comes within
        :data:`EPOCH_GAP_S`; if it comes later (another callback's work came first: a checkpoint, an
        evaluation), the epoch's end reads the meters and that stretch is ``other``, not training.
        """
        if self.tracker is None or not self.tracker.running:
            return EMPTY
        if samples is None and phase == "validation":  # evaluated samples not known: nor are the fit's FLOPs
            self.flops.samples_unknown = True
        if phase == "validation" and self._epoch_start is not None:
            begin, end = self.tracker.close(phase)
            self._ledger.add_validation(begin, end)
            self._work_end = end if ends_epoch else None
            self.count(phase, samples)
            if not ends_epoch:  # else the epoch's end follows at once and its accounting works them out
                self._deferred.submit(self.tracker.resolve_marks)  # worked out while the framework wraps up
            return None
        measurement = self.tracker.end(phase)
        if phase == "validation" and not self.dist.distributed:  # between two epochs (an evaluate from another callback's
            self._deferred.settle()  # epoch end, with ours): validation's energy, as its samples are — after the epoch's
            self._ledger.add(phase, measurement)  # accounting (its point's phases end at its end)
        self.count(phase, samples)
        return measurement

    def renumber_epoch(self: TrainingSession, epoch: int) -> None:
        """The epoch in progress is logged as ``epoch`` if the fit ends inside it (Hugging Face's evaluation windows: a
        training cut short between two evaluations ends at the global step reached, not at its window's first step,
        which holds the previous window's point). Nothing when no epoch is in progress."""
        if self._epoch is not None:
            self._epoch = int(epoch)

    def training_ended(self: TrainingSession) -> None:
        """The epoch's training is over and its end hooks begin (Keras: as its callback list's ``on_epoch_end``
        starts; Lightning: as its fit loop's ``on_advance_end`` does). With no validation ending the epoch, a
        reading now ends its training: the epoch's end reuses it if it comes within :data:`EPOCH_GAP_S`; if
        later (a callback listed before this one wrote a checkpoint), that stretch is read as ``other``, not
        training — as after a validation."""
        tracker = self.tracker
        if tracker is None or self._epoch_start is None or self._work_end is not None or not tracker.running:
            return
        try:
            self._work_end = tracker.mark()
        except Exception as exc:  # measurement never crashes training: the epoch's end reads the meters itself
            logger.debug("mlflow-green: no reading as the epoch's training ended: %r", exc)

    def _end_epoch_window(self: TrainingSession) -> tuple[Snapshot, Snapshot | None]:
        """The epoch's end reading, and where the stretch after its last validation (``other``) begins (its end
        reading), None if there is none — worked out by the epoch's accounting, off the training thread.

        Also notes when the epoch's end was settled (:attr:`_last_epoch_end_s`): the next epoch's
        start is judged from there, the stretch since the reading going to ``other`` by time.
        """
        assert self.tracker is not None
        after, self._work_end = self._work_end, None
        self._last_epoch_end_s = self.tracker.clock_s()
        if after is not None and 0 <= self._last_epoch_end_s - after.timestamp_s <= EPOCH_GAP_S:
            return after, None  # only bookkeeping since the validation ended: no meter read
        now = self.tracker.mark()
        self._last_epoch_end_s = now.timestamp_s
        return now, after

    def count(self: TrainingSession, phase: str, samples: int | None) -> None:
        """This rank saw ``samples`` more samples in ``phase`` (summed over ranks at the next epoch end)."""
        if samples:
            self._counts[phase] = self._counts.get(phase, 0) + int(samples)
