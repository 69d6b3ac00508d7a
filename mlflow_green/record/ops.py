"""The spooled operations: what one line of a spool file asks MLflow to do, checked and applied.

Every line after a spool file's header is one JSON object (an *entry*)::

    {"seq": 7, "t_ms": 1700000000123, "op": "<kind>", ...fields of the kind...}

``seq`` is an integer >= 1, strictly increasing within a file; ``t_ms`` is the wall-clock time
(ms since the epoch) the entry was written — the end time given to a run whose writer died.

=========== ========================================================================================
kind        fields
=========== ========================================================================================
create      ``run``: the run to create (:class:`RunSpec`: experiment, name, tags, start time, parent,
            ``token``). Always first when present; every later entry goes into the created run.
metrics     ``metrics``: ``[[key, value, timestamp_ms, step], ...]``
tags        ``tags``: ``{key: value}``
report      ``report``: a JSON object; ``artifact_file`` (default ``green/report.json``)
terminate   ``status`` (``FINISHED``, ``FAILED`` or ``KILLED``), ``end_time_ms``
=========== ========================================================================================

Every operation must be idempotent: a replay interrupted between sending an entry and recording
it sends the entry again. Metrics keep their timestamp and step (MLflow's SQL stores skip a row
that exists), tags and artifacts are overwritten with the same value, and a creation first looks
for a run carrying its token (tag ``green.run_token``). Another module adds a kind with
:func:`register_operation` (e.g. a ``sign`` operation), and lists its module in
``_PROVIDERS`` so that ``mlflow-green sync`` in a fresh process knows it.

Example:
    >>> check_entry({"seq": 1, "t_ms": 0, "op": "tags", "tags": {"green.version": "0.1"}}) is None
    True
    >>> check_entry({"seq": "x", "op": "tags", "tags": {}})
    "seq must be an integer >= 1, got 'x'"
"""

from __future__ import annotations

import importlib
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from mlflow_green.record import schema
from mlflow_green.record.failures import TransientFailure

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

STATUSES = ("FINISHED", "FAILED", "KILLED")
_MAX_METRICS_PER_BATCH = 1000
_MAX_TAGS_PER_BATCH = 100

Apply = Callable[["MlflowClient", str, Mapping[str, Any]], None]
Check = Callable[[Mapping[str, Any]], "str | None"]


@dataclass(frozen=True)
class Operation:
    """How to check and apply one kind of entry."""

    apply: Apply
    check: Check


_OPERATIONS: dict[str, Operation] = {}
_PROVIDERS: tuple[str, ...] = ("mlflow_green.record.run_signature",)
"""Modules that register more kinds when imported (imported on first use of an unknown kind)."""


def register_operation(kind: str, apply: Apply, check: Check) -> None:
    """Add a spooled operation ``kind``: ``apply(client, run_id, entry)``, ``check(entry) -> reason | None``."""
    _OPERATIONS[kind] = Operation(apply, check)


def _operation(kind: object) -> Operation | None:
    if not isinstance(kind, str):
        return None
    if kind not in _OPERATIONS:
        for module in _PROVIDERS:
            try:
                importlib.import_module(module)
            except Exception:
                continue
    return _OPERATIONS.get(kind)


@dataclass(frozen=True)
class RunSpec:
    """A run to create: everything ``mlflow.start_run`` would send, captured when training started.

    Attributes:
        token: Unique; tagged ``green.run_token`` on the run, so that a retried creation finds it.
        experiment_id: The experiment, when known locally.
        experiment_name: Else its name (``MLFLOW_EXPERIMENT_NAME``): looked up, created if missing.
        run_name: The run's name (None: MLflow picks one).
        tags: The run's tags (MLflow's context tags: user, source, git commit...).
        start_time_ms: When training started.
        parent_run_id: The parent run of a nested run.
        parent_token: Or the token of a parent that was itself not created yet.
    """

    token: str
    experiment_id: str | None = None
    experiment_name: str | None = None
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    start_time_ms: int = 0
    parent_run_id: str | None = None
    parent_token: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        """Read a spooled spec; ``ValueError`` if malformed."""
        if not isinstance(data, Mapping) or not isinstance(data.get("token"), str) or not data["token"]:
            raise ValueError("the run to create has no token")
        tags = data.get("tags") or {}
        if not isinstance(tags, Mapping) or not all(isinstance(k, str) for k in tags):
            raise ValueError("the run's tags must be an object of strings")
        optional = {k: data.get(k) for k in ("experiment_id", "experiment_name", "run_name", "parent_run_id", "parent_token")}
        for key, value in optional.items():
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{key} must be a string, got {value!r}")
        start = data.get("start_time_ms", 0)
        if isinstance(start, bool) or not isinstance(start, int):
            raise ValueError(f"start_time_ms must be an integer, got {start!r}")
        return cls(token=data["token"], tags={k: str(v) for k, v in tags.items()}, start_time_ms=start, **optional)


class Sent(NamedTuple):
    """What sending one entry did: the run written into; for ``create``, whether it was created now and the run."""

    run_id: str
    created: bool = False
    run: Run | None = None


def find_run(client: MlflowClient, experiment_id: str, token: str) -> Run | None:
    """The run of ``experiment_id`` tagged with ``token``, if one exists (deleted runs included)."""
    from mlflow.entities import ViewType

    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{schema.TAG_RUN_TOKEN}` = '{token}'",
        run_view_type=ViewType.ALL, max_results=1,
    )
    return runs[0] if runs else None


def create_run(client: MlflowClient, spec: RunSpec, *, look_first: bool = True) -> Sent:
    """Create the run of ``spec``, or find it if an earlier try did (its answer was lost)."""
    experiment_id = _experiment_id(client, spec)
    if look_first:
        found = find_run(client, experiment_id, spec.token)
        if found is not None:
            return Sent(found.info.run_id, False, found)
    tags = {**spec.tags, schema.TAG_RUN_TOKEN: spec.token}
    parent = spec.parent_run_id
    if parent is None and spec.parent_token:
        parent_run = find_run(client, experiment_id, spec.parent_token)
        if parent_run is None:
            raise TransientFailure("its parent run is not created yet")
        parent = parent_run.info.run_id
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(experiment_id, start_time=spec.start_time_ms or None, tags=tags, run_name=spec.run_name)
    return Sent(run.info.run_id, True, run)


def _experiment_id(client: MlflowClient, spec: RunSpec) -> str:
    if spec.experiment_id is not None:
        return spec.experiment_id
    if spec.experiment_name:
        experiment = client.get_experiment_by_name(spec.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(spec.experiment_name)
    return "0"


def send(client: MlflowClient, entry: Mapping[str, Any], run_id: str | None, *, first_try: bool = False) -> Sent:
    """Send one entry. Raises what MLflow raises.

    ``first_try``: a ``create`` that was never tried before skips the look-up of its token.
    """
    if entry.get("op") == "create":
        if run_id:
            return Sent(run_id)  # created earlier (the progress file says so)
        return create_run(client, RunSpec.from_dict(entry["run"]), look_first=not first_try)
    if not run_id:
        raise ValueError("no run to write into: its creation is missing")
    apply_entry(client, run_id, entry)
    return Sent(run_id)


def apply_entry(client: MlflowClient, run_id: str, entry: Mapping[str, Any]) -> None:
    """Send one entry (not ``create``) to ``run_id``; raises what MLflow raises."""
    operation = _operation(entry.get("op"))
    if operation is None:
        raise ValueError(f"unknown spooled operation {entry.get('op')!r}")
    operation.apply(client, run_id, entry)


def check_entry(entry: object) -> str | None:
    """Why ``entry`` is malformed (None if it is well formed)."""
    if not isinstance(entry, Mapping):
        return f"an entry must be a JSON object, got {type(entry).__name__}"
    seq = entry.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        return f"seq must be an integer >= 1, got {seq!r}"
    kind = entry.get("op")
    if kind == "create":
        try:
            RunSpec.from_dict(entry.get("run"))  # type: ignore[arg-type]
        except ValueError as exc:
            return str(exc)
        return None
    operation = _operation(kind)
    if operation is None:
        return f"unknown operation {kind!r}"
    return operation.check(entry)


# -- the built-in kinds ------------------------------------------------------------------------
def _apply_metrics(client: MlflowClient, run_id: str, entry: Mapping[str, Any]) -> None:
    from mlflow.entities import Metric

    rows = [Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in entry["metrics"]]
    for start in range(0, len(rows), _MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=rows[start : start + _MAX_METRICS_PER_BATCH])


def _check_metrics(entry: Mapping[str, Any]) -> str | None:
    rows = entry.get("metrics")
    if not isinstance(rows, list) or not rows:
        return "metrics must be a non-empty list of [key, value, timestamp_ms, step]"
    for row in rows:
        if not (isinstance(row, list) and len(row) == 4 and isinstance(row[0], str)):
            return f"bad metric row {row!r}: expected [key, value, timestamp_ms, step]"
        value, ts, step = row[1:]
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            return f"metric {row[0]!r}: value {value!r} is not a finite number"
        if any(isinstance(x, bool) or not isinstance(x, int) for x in (ts, step)):
            return f"metric {row[0]!r}: timestamp and step must be integers, got {ts!r}, {step!r}"
    return None


def _apply_tags(client: MlflowClient, run_id: str, entry: Mapping[str, Any]) -> None:
    from mlflow.entities import RunTag

    tags = [RunTag(k, str(v)) for k, v in entry["tags"].items()]
    for start in range(0, len(tags), _MAX_TAGS_PER_BATCH):
        client.log_batch(run_id, tags=tags[start : start + _MAX_TAGS_PER_BATCH])


def _check_tags(entry: Mapping[str, Any]) -> str | None:
    tags = entry.get("tags")
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        return "tags must be an object of strings"
    return None


def _apply_report(client: MlflowClient, run_id: str, entry: Mapping[str, Any]) -> None:
    client.log_dict(run_id, entry["report"], entry.get("artifact_file") or schema.REPORT_ARTIFACT)


def _check_report(entry: Mapping[str, Any]) -> str | None:
    if not isinstance(entry.get("report"), dict):
        return "report must be a JSON object"
    name = entry.get("artifact_file", schema.REPORT_ARTIFACT)
    if not isinstance(name, str) or not name or name.startswith("/") or ".." in name.split("/"):
        return f"artifact_file must be a relative path inside the run, got {name!r}"
    return None


def _apply_terminate(client: MlflowClient, run_id: str, entry: Mapping[str, Any]) -> None:
    client.set_terminated(run_id, status=entry["status"], end_time=entry.get("end_time_ms"))


def _check_terminate(entry: Mapping[str, Any]) -> str | None:
    if entry.get("status") not in STATUSES:
        return f"status must be one of {', '.join(STATUSES)}, got {entry.get('status')!r}"
    end = entry.get("end_time_ms")
    if end is not None and (isinstance(end, bool) or not isinstance(end, int)):
        return f"end_time_ms must be an integer, got {end!r}"
    return None


register_operation("metrics", _apply_metrics, _check_metrics)
register_operation("tags", _apply_tags, _check_tags)
register_operation("report", _apply_report, _check_report)
register_operation("terminate", _apply_terminate, _check_terminate)

__all__ = ["STATUSES", "RunSpec", "apply_entry", "check_entry", "create_run", "find_run", "register_operation", "send", "Sent"]
