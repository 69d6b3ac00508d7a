"""Evaluations outside a fit: ``model.evaluate`` / ``trainer.test`` (``test``), ``trainer.validate``
(``validate``), ``predict`` — a part of :class:`~mlflow_green.training.session.TrainingSession`.

Each logs ``green/energy_{kind}_kwh`` (a running total) and joules per sample; a run that holds
only evaluations also gets the ``green.*`` tags and ``green/report.json``; a failed evaluation
ends a run we started ``FAILED`` (``KILLED`` on Ctrl-C).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mlflow_green.measure.readings import Measurement
from mlflow_green.measure.tracker import EnergyTracker
from mlflow_green.record import schema
from mlflow_green.training import outer_calls
from mlflow_green.training.fit_summary import session_report
from mlflow_green.training.home_run import HomeRun
from mlflow_green.training.phases import EMPTY
from mlflow_green.training.shared_evaluations import LoggedEvaluation, logged_by_others, note
from mlflow_green.units import joules_to_kwh

if TYPE_CHECKING:
    from mlflow_green.training.session import TrainingSession

logger = logging.getLogger(__name__)


class EvaluationMixin:
    """The evaluation methods of a training session."""

    @property
    def eval_in_progress(self: TrainingSession) -> bool:
        """True between :meth:`begin_eval` and :meth:`end_eval` outside a fit."""
        return self.evals.in_progress

    def begin_eval(self: TrainingSession, kind: str) -> None:
        """``model.evaluate`` / ``trainer.test`` (``test``), ``trainer.validate`` (``validate``) or ``predict`` starts."""
        self._deferred.settle()
        if self.tracker is not None:  # inside a fit: measured as a phase
            self.begin_phase(kind)
            return
        self.evals.begin(kind, self.template)
        self.output.in_call = True  # its run is bound as it ends: a fit in another thread meanwhile is warned about
        outer_calls.enter(self.output)  # (and it warns itself), until the run's close

    def end_eval(self: TrainingSession, kind: str, *, samples: int | None = None, status: str = "FINISHED") -> Measurement:
        """It ends: ``green/energy_{kind}_kwh`` (running total), joules per sample, tags and the report."""
        self._deferred.settle()
        if self.tracker is not None:
            return self.end_phase(kind, samples=samples) or EMPTY
        tracker = self.evals.tracker
        if tracker is None:
            self._not_in_call()
            return EMPTY
        local = self.evals.end()
        if status == "FINISHED":
            try:
                measured, counts = self.dist.combine({"m": local}, {"n": samples or 0})
            except BaseException:  # a rank gone: nothing logged, and no call in progress left behind (see begin_eval)
                self._not_in_call()
                raise
        else:  # no collective at a failure (see end_fit): this rank's energy only
            measured, counts = {"m": local}, {"n": samples or 0}
            self.dist.gathered_at_end = not self.dist.distributed
        if self.dist.is_logging_rank:
            self._route_evaluation()
        measurement = self.evals.add(kind, measured["m"])
        try:
            if not self.output.bound:
                self.bind_run()
            self.catch_up()  # another callback's fit since this one's (two models in turn): from the run's figures
            self._go_on_from_others(kind, measurement)
            metrics = {schema.phase_energy_key(kind): joules_to_kwh(self.evals.totals[kind].energy_j)}
            if counts.get("n"):
                metrics[schema.phase_energy_per_sample_key(kind)] = measurement.energy_j / counts["n"]
                self.samples[kind] = self.samples.get(kind, 0) + counts["n"]
            step = self.output.next_free_step(metrics, base=self.steps.current)
            self._log(metrics, step)
            if self.output.run_id:  # the run's latest total of this kind: another callback's next evaluation goes on from it
                note(self.output.run_id, kind, LoggedEvaluation(self.evals.totals[kind], self.samples.get(kind, 0), step, self._writer))
            if self.dist.is_logging_rank:
                self._log_eval_summary(tracker, status)
        except Exception as exc:  # measurement never crashes evaluation
            logger.warning("mlflow-green: could not log the %s energy: %s", kind, exc)
        finally:
            self.output.close(status)
        return measurement

    def _not_in_call(self: TrainingSession) -> None:
        """No evaluation is in progress any more, though the run was not closed: not a measured call either."""
        self.output.in_call = False
        outer_calls.leave(self.output)

    def _go_on_from_others(self: TrainingSession, kind: str, measurement: Measurement) -> None:
        """The run's evaluation totals and samples that another callback of this process logged since this one last
        did (see :mod:`~mlflow_green.training.shared_evaluations`), ``measurement`` (this ``kind``'s) on top."""
        run_id = self.output.run_id
        if not run_id:
            return
        for other_kind, logged in logged_by_others(run_id, self._writer).items():
            self.evals.totals[other_kind] = logged.total + measurement if other_kind == kind else logged.total
            self.samples[other_kind] = logged.samples
            self.output.key_steps_logged({schema.phase_energy_key(other_kind): logged.step,
                                          schema.phase_energy_per_sample_key(other_kind): logged.step})

    def _route_evaluation(self: TrainingSession) -> None:
        """Into the user's run started after the fit (its totals, not the fit's; the fit's kept aside), or back
        into the fit's run once that run has ended (see :mod:`~mlflow_green.training.home_run`)."""
        if self.back_home():
            return
        if self._active_run_elsewhere():
            home, ended = self._home or HomeRun.leave(self), self.evals.ended_kind
            if self._home is not None and self.output.run_id:  # a run of the user's left in turn
                home.left_since[self.output.run_id] = HomeRun.leave(self)
            again = home.left_since.pop(active_run_id() or "", None)
            if again is not None:  # one left before (its nested run has ended): its totals as they were
                again.restore(self)
            else:
                self.bind_run()
            self.evals.ended_kind = ended
            self._home = home  # after the bind (a run bound otherwise, a fit's, is the home from then on)

    def back_home(self: TrainingSession) -> bool:
        """Back into the fit's run if evaluations went into a later run of the user's that has ended since (none
        active, or the fit's run); True if so."""
        home = self._home
        if home is None or self.output.run is not None or not home.is_home(active_run_id()):
            return False
        home.restore(self)
        self._home = None
        return True

    def _active_run_elsewhere(self: TrainingSession) -> bool:
        """After a fit that logged into a run no longer active (its own, ended), the user started another: an
        evaluation now logs into the active run (as one before any fit would), not into the fit's. A run that was
        active already as the fit's run was bound is not another (the fit logged beside it — into a logger's run, a
        child run of a ``track()`` block's —, and so does the evaluation after it)."""
        if self.output.run is not None or not self.output.bound:
            return False
        active = active_run_id()
        return active is not None and active not in (self.output.run_id, self.active_at_bind)

    def _log_eval_summary(self: TrainingSession, tracker: EnergyTracker, status: str) -> None:
        """Tags and report after an evaluation: a run holding only evaluations gets them all."""
        no_fit = not self.ledger.totals() and self.carried.energy_j == 0  # no fit in this run (nor an earlier one's state)
        if no_fit and (self.report is None or self.report.get("evaluations_only")):  # the report of them all
            if self.report is None:
                self._log_tags(tracker, self.evals.total())
            self.report = session_report(self, tracker, self.evals.total(), status, evaluations_only=True)
            self.report["evaluations_only"] = True
        elif self.report is None:  # a run an earlier fit logged into (its state continued): a fit's report
            self._log_tags(tracker, self.carried)
            self.report = session_report(self, tracker, self.carried, status)
        else:
            self.report["phases"].update({k: m.to_dict() for k, m in self.evals.totals.items()})
            self.report["samples"] = dict(self.samples)
            self.report["state"] = self.run_state().to_dict()  # the evaluation's samples too
        if self.log_report:
            self.write_report()


def active_run_id() -> str | None:
    """The id of MLflow's active run in this thread (None: none, or it cannot be told)."""
    try:
        import mlflow

        active = mlflow.active_run()
    except Exception:
        return None
    return active.info.run_id if active is not None else None
