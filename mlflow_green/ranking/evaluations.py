"""Joining runs to their inference evaluations, for ranking by inference (pure: the caller fetches).

A registered version's ``green.inference_run`` tag names the run of its latest ``green``
evaluation. Each record whose version carries the tag gets that run as its ``evaluation``; a
named run that cannot be read leaves the record unranked with the reason. An evaluation run
that is also in the list (same experiment) is not listed a second time on its own.

Example:
    >>> from mlflow_green.ranking.run_record import RunRecord
    >>> train = RunRecord("t1", "cnn", "1", {}, {}, version_tags={"green.inference_run": "e1"})
    >>> evaluation = RunRecord("e1", "eval", "1", {"green/inference_energy_per_prediction_j": 0.01},
    ...                        {"green.inference_batch_size": "32", "green.inference_model_run": "t1"})
    >>> joined = attach_evaluations([train, evaluation], lambda ids: {"e1": evaluation})
    >>> [(r.run_id, r.evaluation.run_id if r.evaluation else None) for r in joined]
    [('t1', 'e1')]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from mlflow_green.inference.link import evaluation_run_id, link_problem, malformed_reason
from mlflow_green.ranking.run_record import RunRecord
from mlflow_green.record import schema

Fetch = Callable[[Iterable[str]], Mapping[str, RunRecord]]
"""Reads runs by id (missing ones are left out of the answer)."""


def attach_evaluations(records: Sequence[RunRecord], fetch: Fetch) -> list[RunRecord]:
    """``records`` with each registered version's evaluation run attached (see the module docstring).

    The tag must hold a run id, and the run must be a green evaluation of the record's own model
    (:func:`~mlflow_green.inference.link.link_problem`); otherwise the record stays unranked, with why.
    """
    malformed = {record.run_id: tag for record in records
                 if (tag := _tag(record)) and evaluation_run_id(tag) is None}
    wanted = {record.run_id: evaluation_run_id(_tag(record)) for record in records}
    named = {run_id for owner, run_id in wanted.items() if run_id and run_id != owner}
    if not named and not malformed:
        return list(records)
    listed = {record.run_id: record for record in records}
    found = dict(fetch(sorted(named - set(listed))))
    found.update({run_id: listed[run_id] for run_id in named & set(listed)})
    joined = []
    for record in records:
        run_id = wanted[record.run_id]
        if record.run_id in malformed:
            joined.append(replace(record, evaluation_missing=malformed_reason(malformed[record.run_id])))
        elif not run_id or run_id == record.run_id:
            joined.append(record)
        elif run_id in found:
            problem = link_problem(run_id, found[run_id].tags, record.run_id or None)
            joined.append(replace(record, evaluation_missing=problem) if problem else
                          replace(record, evaluation=found[run_id]))
        else:
            missing = f"evaluation run {run_id} ({schema.TAG_INFERENCE_RUN} of version {record.model_version}) not found"
            joined.append(replace(record, evaluation_missing=missing))
    attached = {r.evaluation.run_id for r in joined if r.evaluation is not None}
    return [r for r in joined if r.run_id not in attached or r.evaluation is not None]


def _tag(record: RunRecord) -> str:
    return (record.version_tags.get(schema.TAG_INFERENCE_RUN) or "").strip()
