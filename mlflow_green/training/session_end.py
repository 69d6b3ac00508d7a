"""The end of a fit — a part of :class:`~mlflow_green.training.session.TrainingSession`.

However a fit ends (return, early stop, budget stop, an exception, ``KeyboardInterrupt``,
``SIGTERM``), the adapter calls :meth:`FitEndMixin.end_fit` once, at that moment: the meters stop
first; the final totals are logged at the last step once (replacing that step's epoch-end
values), with the projection equal to the actual total; then the tags and ``green/report.json``;
then the run is flushed and, if we started it, ended with the fit's status. This is where a fit's
figures are final: the seam for signing them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlflow_green.measure.readings import Measurement
from mlflow_green.record import schema
from mlflow_green.training import outer_calls
from mlflow_green.training.distributed import merge_parts
from mlflow_green.training.figures import efficiency_metrics, projection_metrics
from mlflow_green.training.fit_summary import session_report
from mlflow_green.training.inspection import ModelProfile
from mlflow_green.training.phases import EMPTY
from mlflow_green.training.signal_holds import signals_held

if TYPE_CHECKING:
    from mlflow_green.measure.tracker import EnergyTracker
    from mlflow_green.training.session import TrainingSession

logger = logging.getLogger(__name__)

FIT_ENDING = threading.RLock()
"""Held while a fit's end logs its figures (any session of the process): a model profile logged from another thread
meanwhile (``log_model()``) waits for it — in between, it took the fit for ended and sent the last step's held values
before the final totals replaced them (two points at that step)."""


class FitEndMixin:
    """The end-of-fit methods of a training session."""

    def end_fit(self: TrainingSession, status: str = "FINISHED", *, logs: Mapping[str, Any] | None = None, profile: ModelProfile | None = None) -> Measurement:
        """The fit ends (``FINISHED``, ``FAILED`` or ``KILLED``): the meters stop now; final totals, tags, report.

        The final totals go at the last step once (replacing its epoch-end values), with the
        projection equal to the actual total. This is where a fit's figures are final (the seam
        for signing them) and where the run is flushed and, if we started it, ended. A SIGTERM or
        SIGINT meanwhile is delivered once the run is complete (a second one at once), except in a
        distributed fit that finished, whose end may wait in a collective for a rank that is gone.
        """
        # a SIGTERM or SIGINT now (another rank failed, a scheduler, a ddp_spawn launcher's death, Ctrl-C) waits
        # for the totals and report — except around a collective (a distributed fit that finished), which a signal
        # must be able to end if a rank is gone
        held = not (self.dist.distributed and status == "FINISHED")
        with FIT_ENDING, signals_held(enabled=held):
            return self._end_fit(status, logs=logs, profile=profile)

    def _end_fit(self: TrainingSession, status: str, *, logs: Mapping[str, Any] | None, profile: ModelProfile | None) -> Measurement:
        self._deferred.settle()  # every epoch ended so far accounted for, in order, before the totals
        if self.tracker is None:
            return self.carried
        tracker, self.tracker = self.tracker, None
        try:
            stopped = tracker.stop()
            self._close_cut_short_epoch(tracker)
            if self.dist.distributed and status != "FINISHED":  # no collective: the other ranks may never join it
                parts = [({"total": self._failed_fit_total(tracker, stopped)}, self._take_counts())]
                self.dist.gathered_at_end = False
            else:
                parts = self.dist.exchange({"total": stopped}, self._take_counts())
                self.dist.record_rank_totals(parts, "total")
            measured, counts = merge_parts(parts)
            self._add_samples(counts)
            self.fit_total = measured["total"]
            total = self.carried + self.fit_total
            self._update_quality(logs or {})
            self._warn_if_quality_never_seen(logs or {})
            if status == "FINISHED" and not self._epochs and not self.dist.distributed:
                logger.warning("mlflow-green: this fit finished without an epoch ending (it started at its last epoch: "
                               "initial_epoch, a checkpoint resumed at max_epochs; or it trained no batch): its run "
                               "holds one point, its setup's energy as other")
            step = self._final_step()
            metrics = self._running_metrics(total, window=None)
            fit_profile = profile or self.profile  # the run's FLOPs: this fit's samples at its model's, the earlier fits' at theirs
            run_flops = self.flops.end_fit(fit_profile.flops_per_sample if fit_profile is not None else None, self.samples)
            metrics.update(efficiency_metrics(run_flops, total))
            metrics.update(projection_metrics(total.energy_j, self.config))
            self._log(metrics, step)
            if profile is not None:
                self._log_model(profile, step)
            elif self._first_epoch is None and self.profile is not None:  # ended before its first epoch (a failed
                self._log_model(self.profile, step)  # sanity check): the model's figures are logged as an epoch begins
            self.output.send_pending()  # the last step is complete: its totals go first, with the tags in one batch
            outer_calls.warn_if_concurrent(self.output)  # a call in another thread since its last look
            self._log_tags(tracker, total)
            if self.dist.is_logging_rank:
                self.report = session_report(self, tracker, total, status, run_total=total)
                if self.log_report:
                    self.write_report()
            self.carried = total
            self.ledger.close_fit()
            return total
        except Exception as exc:  # measurement never crashes training
            logger.warning("mlflow-green: could not finish measuring the fit: %s", exc)
            return self.carried
        finally:
            self._epoch_start = self._epoch = self._last_epoch_end = self._work_end = None
            self._deferred.close()
            self.output.close(status)

    def _close_cut_short_epoch(self: TrainingSession, tracker: EnergyTracker) -> None:
        """A fit that ended inside an epoch (an exception, an interrupt): the epoch's part until the meters
        stopped is split like a whole epoch's — its training to ``train`` (and ``data``), a validation it was in
        (ended or not) to ``validation`` — not left to ``other``. This rank's, as the failed fit's total is."""
        start = self._epoch_start
        if start is None:
            return
        end = tracker.end_snapshot
        validation = self._ledger.epoch_validation
        opened = tracker.opened("validation")  # the fit ended during a validation
        if opened is not None:
            validation = validation + (end - opened)
        after = end - self._work_end if self._work_end is not None and opened is None else EMPTY
        self._ledger.end_epoch(end - start, validation=validation, after=after)

    def _warn_if_quality_never_seen(self: TrainingSession, logs: Mapping[str, Any]) -> None:
        """A ``quality_metric`` the fit never logged: say so, and what it did log (else it is silently unused)."""
        if not self.quality_metric or self.quality is not None or not self.dist.is_logging_rank:
            return
        seen = sorted(str(k) for k in logs if not str(k).startswith(schema.METRIC_PREFIX))
        logger.warning(
            "mlflow-green: quality_metric=%r was never among the fit's metrics (%s), so green/accuracy_per_kwh "
            "is not logged; pass one of those names", self.quality_metric, ", ".join(seen) or "none logged",
        )

    def _failed_fit_total(self: TrainingSession, tracker: EnergyTracker, stopped: Measurement) -> Measurement:
        """A distributed fit that failed: every rank's total at the last epoch end, plus this rank's since.

        A collective at a failure can hang (another rank is stuck in the framework's own collective, or
        dead): the ranks' energy after their last epoch end is not gathered, only this rank's.
        """
        if self._gathered is None:  # no epoch ended: this rank's energy only
            return stopped
        total, end = self._gathered
        return total + (tracker.end_snapshot - end)

    def report_phases(self: TrainingSession, total: Measurement, *, evaluations_in_total: bool = False) -> dict[str, Measurement]:
        """The phases ``report.json`` shows: train, validation, data, other, and evaluations.

        ``evaluations_in_total``: ``total`` is the evaluations' (a run holding no fit); the fit phases
        then add up to what is left of it (nothing), not to the evaluations a second time as ``other``.
        """
        phases = self.ledger.with_other(total - self.evals.total() if evaluations_in_total else total)
        phases.update({p: m for p, m in self.ledger.totals().items() if p not in phases})
        phases.update(self.evals.totals)
        return phases

    def _final_step(self: TrainingSession) -> int:
        """The step of the end-of-fit totals: the epoch in progress, else the last epoch's, else a new one."""
        if self._epoch is not None and self._first_epoch is not None:
            return self.steps.step_for(self._epoch)
        if self.epochs:
            return self.epochs[-1]["step"]
        return self.steps.step_for(self.steps.next_step)

