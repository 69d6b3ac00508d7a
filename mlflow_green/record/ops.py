"""The spooled operations: what one line of a spool file asks MLflow to do, checked and applied.

Every line after a spool file's header is one JSON object (an *entry*)::

    {"seq": 7, "t_ms": 1700000000123, "op": "<kind>", ...fields of the kind...}

``seq`` is an integer >= 1, strictly increasing within a file; ``t_ms`` is the wall-clock time
(ms since the epoch) the entry was written — the end time given to a run whose writer died.

A ``metrics`` entry with ``"held": true`` holds the values of a step that is not complete yet (the
callbacks send one point per step, the step's final values): its writer never sends it. A later
entry with ``"releases": <its seq>`` supersedes it (the step's values were sent, or a newer hold
replaced it). A replay sends a held entry only if nothing released it: its writer died holding it.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

from mlflow_green.record import schema
from mlflow_green.record.creation import RunSpec, Sent, create_run

if TYPE_CHECKING:
    from mlflow import MlflowClient

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


BATCHABLE = ("metrics", "tags")
"""Kinds whose consecutive entries the live writer may send in one ``log_batch`` (see :class:`LeadingBatch`)."""


class LeadingBatch:
    """How many of a queue's leading entries one ``log_batch`` call can send, kept up to date as the
    queue grows at its tail and is taken from its head.

    Consecutive ``metrics`` and ``tags`` entries go together within MLflow's limits on one call
    (1 000 metrics, 100 tags); anything else is sent alone. While the head stays the same entry, each
    entry is looked at once (a queue that gathers writes for seconds is not walked again at every write).

    Example:
        >>> from collections import deque
        >>> queue, leading = deque(), LeadingBatch()
        >>> queue.append({"op": "metrics", "metrics": [["a", 1.0, 0, 0]]}); leading.size(queue)
        1
        >>> queue.append({"op": "tags", "tags": {"t": "1"}}); leading.size(queue)
        2
        >>> queue.append({"op": "report", "report": {}}); leading.size(queue)
        2
    """

    def __init__(self) -> None:
        self._head: Mapping[str, Any] | None = None
        self._count = self._metrics = self._tags = 0
        self._ended = False  # an entry that cannot join the batch was met: later ones do not count

    def size(self, queue: Sequence[Mapping[str, Any]]) -> int:
        """How many of ``queue``'s leading entries one ``log_batch`` call can send (at least 1)."""
        if not queue:
            return 1
        if queue[0] is not self._head:  # the head was sent: start over from the new one
            self._head, self._count, self._metrics, self._tags, self._ended = queue[0], 0, 0, 0, False
        if not self._ended and self._count < len(queue):
            unseen = list(islice(reversed(queue), len(queue) - self._count))
            for entry in reversed(unseen):
                if not self._join(entry):
                    self._ended = True
                    break
        return max(self._count, 1)

    def _join(self, entry: Mapping[str, Any]) -> bool:
        if entry.get("op") not in BATCHABLE or entry.get("held"):
            return False
        metrics = self._metrics + len(entry.get("metrics") or ())
        tags = self._tags + len(entry.get("tags") or ())
        if self._count and (metrics > _MAX_METRICS_PER_BATCH or tags > _MAX_TAGS_PER_BATCH):
            return False
        self._count, self._metrics, self._tags = self._count + 1, metrics, tags
        return True


def apply_batch(client: MlflowClient, run_id: str, entries: Sequence[Mapping[str, Any]]) -> None:
    """Send consecutive ``metrics`` / ``tags`` entries (as chosen by :class:`LeadingBatch`) in one ``log_batch``.

    A tag set twice keeps its later value, as sending the entries one by one would.
    """
    if len(entries) == 1:
        apply_entry(client, run_id, entries[0])
        return
    from mlflow.entities import Metric, RunTag

    metrics = [Metric(k, float(v), int(ts), int(step)) for e in entries for k, v, ts, step in e.get("metrics") or ()]
    tags = {k: str(v) for e in entries for k, v in (e.get("tags") or {}).items()}
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])


def check_entry(entry: object) -> str | None:
    """Why ``entry`` is malformed (None if it is well formed)."""
    if not isinstance(entry, Mapping):
        return f"an entry must be a JSON object, got {type(entry).__name__}"
    seq = entry.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        return f"seq must be an integer >= 1, got {seq!r}"
    released = entry.get("releases")
    if released is not None and (isinstance(released, bool) or not isinstance(released, int) or not 1 <= released < seq):
        return f"releases must be the seq of an earlier entry, got {released!r}"
    if not isinstance(entry.get("held", False), bool):
        return f"held must be true or false, got {entry.get('held')!r}"
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

__all__ = ["STATUSES", "Operation", "RunSpec", "Sent", "apply_entry", "check_entry", "register_operation", "send"]
