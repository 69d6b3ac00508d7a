"""Where a model version's inference figures are: the evaluation its ``green.inference_run`` names.

The ``green`` evaluator tags every registered version it evaluated with ``green.inference_run``
(the evaluation run). A version without the tag whose source run itself carries the inference
metrics (evaluated inside its training run) uses its source run. Anything else has no inference
measurement, and the reason says how to get one.

Example:
    >>> found = find_inference("digits", "3", {}, "r1", {"green/inference_energy_per_prediction_j": 0.002},
    ...                        {"green.inference_batch_size": "32"}, read_run=lambda run_id: None)
    >>> found.run_id, found.via, found.batch_size
    ('r1', 'source run', '32')
    >>> print(find_inference("digits", "3", {}, "r1", {}, {}, read_run=lambda run_id: None).missing)
    no inference measurement: version 3 has no green.inference_run tag and its source run logged no green/inference_energy_per_prediction_j; evaluate it with mlflow.models.evaluate("models:/digits/3", data, targets=..., model_type=..., evaluators="green")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlflow_green.inference.link import evaluation_run_id, link_problem, malformed_reason
from mlflow_green.record import schema

if TYPE_CHECKING:
    from mlflow_green.record.signing import Verification


@dataclass(frozen=True)
class InferenceEvidence:
    """A version's inference measurement, or why it has none.

    Attributes:
        run_id: The run holding the figures (the evaluation, or the source run).
        metrics: That run's latest metrics.
        tags: That run's tags.
        via: ``green.inference_run`` or ``source run``: how it was found.
        missing: Why there is no inference measurement; None when found.
        signature: The verification of that run's ``green.signature`` (only when the policy sets
            ``require_signed``; the source run's own verification when found ``via`` it).
    """

    run_id: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    via: str = ""
    missing: str | None = None
    signature: Verification | None = None

    @property
    def batch_size(self) -> str | None:
        """The headline batch size of the evaluation (``green.inference_batch_size``)."""
        return self.tags.get(schema.TAG_INFERENCE_BATCH_SIZE)

    @property
    def where(self) -> str:
        """``batch size 32, run 3f2a…``: for rule details."""
        parts = [f"batch size {self.batch_size}"] if self.batch_size else []
        if self.run_id:
            parts.append(f"run {self.run_id}")
        return ", ".join(parts)


def find_inference(
    model: str,
    version: str,
    version_tags: Mapping[str, str],
    source_run_id: str | None,
    source_metrics: Mapping[str, float],
    source_tags: Mapping[str, str],
    *,
    read_run: Callable[[str], Any],
) -> InferenceEvidence:
    """The version's inference evidence (see the module docstring).

    Args:
        read_run: Returns the MLflow ``Run`` of a run id, or None when it does not exist.
    """
    tag = (version_tags.get(schema.TAG_INFERENCE_RUN) or "").strip()
    named = evaluation_run_id(tag)
    if tag and named is None:
        return InferenceEvidence(None, via=schema.TAG_INFERENCE_RUN, missing=malformed_reason(tag))
    if named and named != source_run_id:
        run = read_run(named)
        if run is None:
            return InferenceEvidence(named, via=schema.TAG_INFERENCE_RUN,
                                     missing=f"evaluation run {named} ({schema.TAG_INFERENCE_RUN}) not found")
        tags = dict(run.data.tags)
        problem = link_problem(named, tags, source_run_id)
        if problem is not None:
            return InferenceEvidence(named, via=schema.TAG_INFERENCE_RUN, missing=problem)
        return InferenceEvidence(named, dict(run.data.metrics), tags, schema.TAG_INFERENCE_RUN)
    if schema.INFERENCE_ENERGY_PER_PREDICTION_J in source_metrics:
        return InferenceEvidence(source_run_id, dict(source_metrics), dict(source_tags), "source run")
    return InferenceEvidence(
        None,
        missing=(
            f"no inference measurement: version {version} has no {schema.TAG_INFERENCE_RUN} tag and its source run "
            f"logged no {schema.INFERENCE_ENERGY_PER_PREDICTION_J}; evaluate it with "
            f'mlflow.models.evaluate("models:/{model}/{version}", data, targets=..., model_type=..., evaluators="green")'
        ),
    )
