"""The model's profile in a training session: ``green/model_*`` metrics, the compression tag, and
``report.json``'s model section — at the fit's first step, at the step in progress, or after a fit
(post-training quantization or pruning) at a new step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_green._version import __version__
from mlflow_green.record import schema
from mlflow_green.training.inspection import ModelProfile
from mlflow_green.training.session_end import FIT_ENDING

if TYPE_CHECKING:
    from mlflow_green.training.session import TrainingSession


class ProfileMixin:
    """The profile methods of a training session."""

    def log_profile(self: TrainingSession, profile: ModelProfile) -> None:
        """A model profile: at the fit's first step, at the current step during a fit, at a new step after.

        After a fit (post-training quantization or pruning) the changed ``green/model_*`` values
        go at the step after the last one and ``green/report.json`` is updated.
        """
        with FIT_ENDING:  # not while a fit's end (another thread's) logs its figures
            self._log_profile(profile)

    def _log_profile(self: TrainingSession, profile: ModelProfile) -> None:
        self._deferred.settle()  # after the values of the epochs ended so far
        if self.tracker is not None and self._first_epoch is None:
            self.profile = profile  # logged when the first epoch begins
            return
        if self.tracker is not None:
            self._log_model(profile, self.steps.peek(self._epoch) if self._epoch is not None else self.steps.current)
            return
        if self.dist.is_logging_rank:
            self.back_home()  # the trained model's run, once a later run of the user's an evaluation went into has ended
        bound_now = not self.output.bound and self.dist.is_logging_rank
        if bound_now:  # before any fit or evaluation (a baseline's profile): the run they will log into
            self.bind_run()
            self.output.log_tags({schema.TAG_VERSION: __version__})  # what made the run (no measurement: no meters)
        elif self.dist.is_logging_rank:  # another callback's fit since: after the run's last step, and its report left
            self.catch_up()  # as that fit wrote it (this one's would be out of date: catch_up drops it)
        self._log_model(profile, self.steps.step_for(self.steps.next_step))
        if self.report is not None and self.log_report:
            self.report["model"] = profile.to_dict()
            self.write_report()
        self.output.flush()  # outside a fit: the caller expects it in MLflow on return
        if bound_now:  # a run of its own ended (FINISHED), never left running or active; a later call logs into it
            self.output.close("FINISHED")

    def _log_model(self: TrainingSession, profile: ModelProfile, step: int, *, at_epoch_start: bool = False) -> None:
        """The profile's ``green/model_*`` values that changed since last logged, and the compression tag.

        ``at_epoch_start``: from an epoch's start hook — the values are spooled with the epoch's end
        values and the tag is handed to the writer thread (no spool write on the hook's path).
        """
        self.profile = profile
        if self.dist.is_logging_rank:
            handover = at_epoch_start and not self._deferred.in_job()
            self.output.log_changed(profile.metrics(), step, hold=not at_epoch_start, background=handover)
            self.output.log_tags({schema.TAG_COMPRESSION: profile.compression_tag()}, background=handover)
