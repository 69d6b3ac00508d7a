"""The fit's run, left while evaluations log into a run the user started after the fit, and gone back to.

After a fit, an evaluation with a run of the user's active that was started after the fit logs into that run
(as an evaluation before any fit would). Once that run has ended — no run active, or the fit's own run
active again — the next evaluation belongs to the fit's run again, and continues its running totals and
steps where they were left: :class:`HomeRun` holds them meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow_green.training.session import TrainingSession

RUN_TOTALS = ("carried", "_ledger", "samples", "flops", "steps", "evals", "report", "active_at_bind", "resumed_from")
"""The session's attributes that belong to the run it logs into (see ``TrainingSession._start_run_totals``)."""
BINDING = ("_last", "_run_id", "_key_steps", "_last_values")
"""What :class:`~mlflow_green.training.session_run.SessionRun` holds of a run it logged into and closed."""


@dataclass
class HomeRun:
    """The fit's run and its running totals, while evaluations log elsewhere.

    Example:
        >>> from mlflow_green import EnergyTracker
        >>> from mlflow_green.testing import FakeMeter
        >>> from mlflow_green.training.session import TrainingSession
        >>> session = TrainingSession(framework="keras", tracker=EnergyTracker(meters=[FakeMeter({"cpu:0": 10.0})]))
        >>> home = HomeRun.leave(session)
        >>> home.run_id is None, home.is_home(None)
        (True, True)
    """

    run_id: str | None
    totals: dict[str, Any]
    binding: dict[str, Any]
    left_since: dict[str, HomeRun] = field(default_factory=dict)
    """The user's runs evaluations went into since and left again (a nested run of one): back into one, its totals
    go on from where they were left, as the fit's do."""

    @classmethod
    def leave(cls, session: TrainingSession) -> HomeRun:
        """What the session holds of the run it logged into last (closed: no call in progress logs into it)."""
        return cls(session.output.run_id, {name: getattr(session, name) for name in RUN_TOTALS},
                   {name: getattr(session.output, name) for name in BINDING})

    def is_home(self, active_run_id: str | None) -> bool:
        """True if an evaluation ending while ``active_run_id`` is MLflow's active run belongs to the fit's run:
        none is active (the user's later run has ended), or the fit's run is."""
        return active_run_id is None or active_run_id == self.run_id

    def restore(self, session: TrainingSession) -> None:
        """Log into the fit's run again, its totals and steps as they were left (the evaluation that ends now
        keeps its kind)."""
        ended_kind = session.evals.ended_kind
        for name, value in self.totals.items():
            setattr(session, name, value)
        session.evals.ended_kind = ended_kind
        output = session.output
        output.run, output._reopened = None, False  # closed, as when it was left
        for name, value in self.binding.items():
            setattr(output, name, value)
