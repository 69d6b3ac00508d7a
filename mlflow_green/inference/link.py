"""Is a version's ``green.inference_run`` a real evaluation of that version's model? (pure)

Any client can set a model-version tag. Before ranking or a gate reads inference figures through
``green.inference_run``, two checks: the tag holds a run id (not text that would break a store
query), and the run it names evaluated the model this version was registered from — the
evaluator records that model's run in ``green.inference_model_run``. An evaluation of another
model, or a run that is no evaluation at all, is refused with the reason.

Example:
    >>> evaluation_run_id("3f2a9c1b04de4f0e9a1b2c3d4e5f6a7b")
    '3f2a9c1b04de4f0e9a1b2c3d4e5f6a7b'
    >>> print(link_problem("e1", {"green.inference_batch_size": "32", "green.inference_model_run": "r9"}, "r1"))
    evaluation run e1 (green.inference_run) measured the model of run r9, not this version's (run r1)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from mlflow_green.record import schema

_RUN_ID = re.compile(r"[A-Za-z0-9][\w-]{0,255}")
"""MLflow's own run-id rule."""


def evaluation_run_id(tag: str | None) -> str | None:
    """The run id in a ``green.inference_run`` tag; None when it holds no well-formed run id."""
    value = (tag or "").strip()
    return value if _RUN_ID.fullmatch(value) else None


def malformed_reason(tag: str) -> str:
    """Why a ``green.inference_run`` value was not followed (shown escaped and shortened)."""
    shown = repr(tag[:60] + ("…" if len(tag) > 60 else ""))
    return f"{schema.TAG_INFERENCE_RUN} is not a run id: {shown}"


def link_problem(run_id: str, evaluation_tags: Mapping[str, str], source_run_id: str | None) -> str | None:
    """Why the evaluation ``run_id`` (with ``evaluation_tags``) cannot stand for a version whose
    source run is ``source_run_id``; None when it can."""
    where = f"evaluation run {run_id} ({schema.TAG_INFERENCE_RUN})"
    measured = (evaluation_tags.get(schema.TAG_INFERENCE_MODEL_RUN) or "").strip()
    if schema.TAG_INFERENCE_BATCH_SIZE not in evaluation_tags:
        return f"{where} is not a green evaluation (no {schema.TAG_INFERENCE_BATCH_SIZE} tag)"
    if not measured:
        return f"{where} does not say which model it measured (no {schema.TAG_INFERENCE_MODEL_RUN} tag)"
    if source_run_id and measured != source_run_id:
        return f"{where} measured the model of run {measured}, not this version's (run {source_run_id})"
    return None
