"""What a checkpoint holds of a training session, so that a resumed training continues its totals.

Example:
    >>> state = SessionState(run_id="abc", total=Measurement(2.0), last_step=1)
    >>> SessionState.from_dict(state.to_dict()).last_step
    1
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow_green.measure.readings import Measurement

logger = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass
class SessionState:
    """Totals of a run as of a checkpoint.

    Attributes:
        run_id: The run the totals were logged into.
        total: Energy since the run's first fit.
        phases: Energy per phase.
        samples: Samples per phase.
        last_step: The last step logged.
        flops: FLOPs the run's fits did, each fit's samples at its own model's FLOPs per sample (None:
            not known).
        pending_run: While the run was not created yet (its creation spooled, ``run_id`` None): how to
            find it once it is — its creation token (tagged ``green.run_token`` on the run) and
            experiment (``{"token", "experiment_id", "experiment_name"}``).
    """

    run_id: str | None
    total: Measurement
    phases: dict[str, Measurement] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    last_step: int | None = None
    pending_run: dict[str, str | None] | None = None
    flops: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint form (plain JSON-ready values)."""
        return {
            "version": STATE_VERSION,
            "run_id": self.run_id,
            "total": self.total.to_dict(),
            "phases": {phase: m.to_dict() for phase, m in self.phases.items()},
            "samples": dict(self.samples),
            "last_step": self.last_step,
            **({"pending_run": dict(self.pending_run)} if self.pending_run else {}),
            **({"flops": self.flops} if self.flops is not None else {}),
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any] | None) -> SessionState | None:
        """The state in a checkpoint; None (with a warning) for an empty or unknown version."""
        if not state or state.get("version") != STATE_VERSION:
            logger.warning(
                "mlflow-green: ignoring a checkpoint state of unknown version %r",
                state.get("version") if state else None,
            )
            return None
        return cls(
            run_id=state.get("run_id"),
            total=Measurement.from_dict(state["total"]),
            phases={phase: Measurement.from_dict(m) for phase, m in state.get("phases", {}).items()},
            samples={k: int(v) for k, v in state.get("samples", {}).items()},
            last_step=state.get("last_step"),
            pending_run=pending_run_of(state.get("pending_run")),
            flops=float(state["flops"]) if isinstance(state.get("flops"), (int, float)) else None,
        )


def pending_run_of(value: Any) -> dict[str, str | None] | None:
    """A checkpoint's (or a backup's) ``pending_run``, if it names a token (anything else: None)."""
    if not isinstance(value, Mapping) or not isinstance(value.get("token"), str) or not value["token"]:
        return None
    return {k: (str(value[k]) if value.get(k) is not None else None) for k in ("token", "experiment_id", "experiment_name")}
