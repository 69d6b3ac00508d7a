"""Checkpoints and copies of a training session — a part of :class:`~mlflow_green.training.session.TrainingSession`.

``state_dict`` / ``load_state_dict`` carry a run's totals through a checkpoint (a resumed
training continues them in the same run; in another run they start at zero). A session pickles
(``ddp_spawn``, ``copy.deepcopy``) with its state but without running meters or connections; one
copied while it measures copies its configuration only (a fresh, unbound session).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlflow_green.measure.readings import Measurement
from mlflow_green.record.bounded_read import read_within
from mlflow_green.record.runs import RunHandle, resolve_run
from mlflow_green.record.timeouts import RunTimeouts
from mlflow_green.training.phases import EMPTY
from mlflow_green.training.run_flops import RunFlops
from mlflow_green.training.run_history import EarlierFits, earlier_fits, holds_no_earlier_figures
from mlflow_green.training.shared_evaluations import new_writer, note_report, reported_by_other
from mlflow_green.training.state import SessionState
from mlflow_green.training.steps import StepCounter

if TYPE_CHECKING:
    from mlflow_green.training.session import TrainingSession

logger = logging.getLogger(__name__)


class StateMixin:
    """The checkpoint and copy methods of a training session."""

    def state_dict(self: TrainingSession, epoch_samples: int = 0) -> dict[str, Any]:
        """What a checkpoint must hold so that a resumed training continues the totals.

        ``epoch_samples``: the training samples of the epoch in progress so far (a checkpoint written inside an
        epoch holds its energy up to now, and so the samples that energy trained)."""
        self._deferred.settle()
        if self.tracker is None:
            total = self.carried
        elif not self.dist.distributed:  # exact: up to now
            total = self.carried + self.tracker.elapsed()
        else:  # no collective here (only some ranks save checkpoints): as of the last epoch end
            total = self._last_total if self._last_total is not None else self.carried
        samples = dict(self.samples)
        if epoch_samples > 0 and self.tracker is not None and not self.dist.distributed:
            samples["train"] = samples.get("train", 0) + int(epoch_samples)
        return self.run_state(total, samples).to_dict()

    def load_state_dict(self: TrainingSession, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint's :meth:`state_dict` (in its run; a new run starts at zero)."""
        self._deferred.settle()
        loaded = SessionState.from_dict(state)
        if loaded is None:
            return
        self.take_state(loaded)
        self.resumed_run_id = loaded.run_id
        # written before its run was created: found by its creation token when a run is bound
        self.resumed_pending_run = loaded.pending_run if loaded.run_id is None else None

    def run_state(self: TrainingSession, total: Measurement | None = None, samples: dict[str, int] | None = None) -> SessionState:
        """The run's totals (``total``, default those carried so far), phases, samples (default those counted so far),
        FLOPs and last step."""
        run_id, samples = self.run_id, dict(self.samples) if samples is None else samples
        flops = self.flops.total(self.profile.flops_per_sample if self.profile is not None else None, samples)
        return SessionState(run_id, self.carried if total is None else total, self.ledger.totals(), samples, self.last_step,
                            pending_run=self.output.pending_creation() if run_id is None else None, flops=flops)

    def _continue_earlier_fits(self: TrainingSession, run: RunHandle, run_id: str, after_step: int | None = None, *,
                               own: bool = False) -> None:
        """A run of the user's holding earlier fits' figures (another callback's): continue its totals and steps.
        ``after_step``: a checkpoint of this run resumed — only if the run went on past its last step (the fit
        that wrote it logged later epochs before it failed: their energy was spent, their steps are taken).
        Read in a worker thread, waited for at most the start timeout; not read in time: as holding none (a sqlite
        file on this machine showing none is asked on this thread: ``run_history.holds_no_earlier_figures``). A
        ``track()`` block's figures (no fit state): a child run of it, as a block after a fit's figures gets. ``own``:
        this session logged into the run before (its evaluations are among the run's)."""
        if holds_no_earlier_figures(run.client, run_id, run.tracking_uri):  # a local sqlite store's answer, at once
            return
        timeout_s = (run.timeouts or RunTimeouts.resolve()).start_for(run.tracking_uri)
        earlier = read_within(lambda: earlier_fits(run.client, run_id), timeout_s)
        if earlier is not None and earlier.block and after_step is None:
            logger.warning("mlflow-green: run %s already holds a track() block's green/ figures; this callback logs "
                           "into a child run of it (its totals and steps from zero would clash with them)", run_id)
            child = resolve_run(run_name=self.output.run_name, timeouts=self.output.timeouts, nested=True, parent=run,
                                activate=False)  # of that run, active or not (an MLFlowLogger's is not)
            self.output.bind(child)  # the totals are at zero still (nothing was taken from the user's run)
            self.child_of = run_id  # an evaluation of the same Trainer logs into the child, not into another
        elif earlier is not None and (after_step is None or (earlier.last_step is not None and earlier.last_step > after_step)):
            self.take_earlier(earlier, own=own)
        elif earlier is not None:  # the checkpoint's fit figures are the run's: the evaluations logged since go on
            self.take_evaluations(earlier, own=own)

    def catch_up(self: TrainingSession) -> bool:
        """Another session of this process wrote the run's report since this one last did (two models trained in turn,
        GAN-style): go on from the run's latest figures — totals, samples, steps, evaluations — as a fit binding it does,
        and build this session's next report afresh; True if so (else nothing is read)."""
        run, run_id = self.output.current, self.output.run_id  # bound, or the last fit's (closed)
        if run is None or not reported_by_other(run_id, self._writer):
            return False
        self._continue_earlier_fits(run, run_id, after_step=self.last_step, own=True)  # type: ignore[arg-type]
        self.report = None
        return True

    def write_report(self: TrainingSession) -> None:
        """``green/report.json`` (:attr:`report`) to the run, noted as this session's (see :meth:`catch_up`)."""
        self.output.log_report(self.report)  # type: ignore[arg-type]
        note_report(self.output.run_id, self._writer)

    def take_earlier(self: TrainingSession, earlier: EarlierFits, *, own: bool = False) -> None:
        """Go on from what other callbacks logged into the run: the fits' totals and steps, the evaluations'
        running totals (an evaluation measured before the run was bound adds to them), and past the last step
        of each evaluation metric (one point per step)."""
        if earlier.state is not None:
            self.take_state(earlier.state)
        if earlier.last_step is not None or earlier.state is not None:
            self.steps = StepCounter(earlier.last_step)
        self.take_evaluations(earlier, own=own)

    def take_evaluations(self: TrainingSession, earlier: EarlierFits, *, own: bool = False) -> None:
        """Go on from the evaluations logged into the run (``trainer.validate`` / ``test``, ``model.evaluate``): their
        running totals, samples and last steps. An evaluation this session measured before it bound the run adds to
        them; ``own`` (it logged into the run before: its evaluations are among the run's) keeps the larger of its
        own running total and the run's — never both added."""
        for kind, measurement in earlier.evaluations.items():
            mine, samples = self.evals.totals.get(kind, EMPTY), earlier.evaluation_samples.get(kind, 0)
            if own:
                measurement = max(mine, measurement, key=lambda m: m.energy_j)
                samples = max(samples, self.samples.get(kind, 0))
            else:
                measurement = measurement + mine
            self.evals.totals[kind] = measurement
            self.samples[kind] = samples
        self.output.key_steps_logged(earlier.key_steps)

    def take_state(self: TrainingSession, state: SessionState) -> None:
        """Go on from ``state``'s totals, phases, samples and last step."""
        self.carried, self.samples, self.steps = state.total, dict(state.samples), StepCounter(state.last_step)
        self.flops = RunFlops.from_state(state.flops, state.samples)
        self.ledger.reset(state.phases)

    # -- pickling (ddp_spawn, copy.deepcopy): state, not running meters or connections ----------
    def __getstate__(self: TrainingSession) -> dict[str, Any]:
        if self.tracker is not None or self.evals.in_progress:  # its totals are about to be stale: not carried on
            logger.warning("mlflow-green: a callback copied while it measures (a deepcopy or pickle during fit, evaluate "
                           "or predict) starts afresh: the copy neither measures that call nor logs into its run")
            return self._unbound_copy().__getstate__()
        self._deferred.settle()  # the copy holds every epoch ended so far
        state = dict(self.__dict__)
        state.update(tracker=None, _epoch_start=None, _epoch=None, _work_end=None, _last_epoch_end=None, _home=None,
                     _writer=new_writer())  # a copy is another session: its evaluations go on from the original's
        return state


    def _unbound_copy(self: TrainingSession) -> TrainingSession:
        """A session with this one's configuration and nothing measured or bound: what a copy taken while
        measuring becomes (its state would be stale, and logged into the run it would rewrite the run's figures)."""
        return type(self)(framework=self.framework, tracker=self.template, quality_metric=self.quality_metric,
                          budget=self.budget, log_report=self.log_report, run_name=self.output.run_name,
                          timeouts=self.output.timeouts)

    def _agree_with_rank_zero(self: TrainingSession) -> None:
        """Every rank takes rank zero's run totals (only it knows whether the run is a new one)."""
        assert self.dist.all_gather is not None
        zero = SessionState.from_dict(self.dist.all_gather(self.run_state().to_dict())[0])
        if zero is not None:
            self.take_state(zero)

