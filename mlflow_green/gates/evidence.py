"""What a gate knows about a model version: its source run's values, the current holder, the signature.

Example:
    >>> evidence = Evidence(run_id="r1", metrics={"green/energy_kwh": 0.2}, tags={"green.estimated": "false"},
    ...                     target="alias champion",
    ...                     incumbent=Incumbent("3", 4500.0, target="alias champion"))
    >>> evidence.incumbent.holds
    'holds alias champion'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow_green.gates.inference_evidence import InferenceEvidence
    from mlflow_green.record.signing import Verification


@dataclass(frozen=True)
class Incumbent:
    """The version that holds the alias (or stage) now — or held it last — for ``beat_current_by_percent``.

    Attributes:
        version: Its version number.
        accuracy_per_kwh: Its source run's ``green/accuracy_per_kwh`` now, as logged (may be
            NaN); None if not logged (or the run is gone).
        remembered: True when nothing holds the alias now and this is the last holder the gate
            recorded (the alias was deleted, or the stage emptied, since).
        target: The alias or stage, e.g. ``alias champion`` (for messages).
        recorded_accuracy_per_kwh: Its quality per kWh when the gate promoted it (the gate's
            memory), None when the gate did not promote it.
    """

    version: str
    accuracy_per_kwh: float | None
    remembered: bool = False
    target: str = ""
    recorded_accuracy_per_kwh: float | None = None

    @property
    def holds(self) -> str:
        """``holds alias champion``, or ``held alias champion last (the alias was removed since)``."""
        target = self.target or "the target"
        if not self.remembered:
            return f"holds {target}"
        since = "no version is in that stage now" if target.startswith("stage ") else "the alias was removed since"
        return f"held {target} last ({since})"


@dataclass(frozen=True)
class Evidence:
    """What the gate knows about a model version.

    Attributes:
        run_id: The version's source run (None if the version has none).
        metrics: The source run's latest metrics (the totals, since green metrics are running totals).
        tags: The source run's tags.
        missing_run: Why there is no run to read, e.g. ``the version has no source run``; None if read.
        target: What the version is checked for, e.g. ``alias champion`` or ``stage Production``;
            None when no alias or stage is given.
        incumbent: The version that holds ``target`` now (or held it last), None if none ever did.
        version: The checked version's number (to tell when it already holds the target).
        version_tags: The checked version's own tags (so unchanged gate tags are not rewritten).
        signature: The verification of the run's ``green.signature`` (only when the policy
            sets ``require_signed``; None otherwise).
        prompt: The version is a prompt version of a prompt (MLflow's prompt registry), by what
            the registry says (:mod:`mlflow_green.gates.prompts`): not a model, not gated.
        inference: The version's inference measurement (its ``green.inference_run`` evaluation),
            read only when the policy has an inference rule; None otherwise.
    """

    run_id: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    missing_run: str | None = None
    target: str | None = None
    incumbent: Incumbent | None = None
    version: str | None = None
    version_tags: Mapping[str, str] = field(default_factory=dict)
    signature: Verification | None = None
    prompt: bool = False
    inference: InferenceEvidence | None = None
