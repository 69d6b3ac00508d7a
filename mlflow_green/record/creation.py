"""Creating a run exactly once, even when the server's answer is lost: a unique token, looked up first.

The run mlflow-green starts is described by a :class:`RunSpec` (captured when training started,
so that a run created later by the background writer or ``mlflow-green sync`` has the right
experiment, name, tags, start time and parent). Its token is tagged ``green.run_token``.

Example:
    >>> RunSpec.from_dict(RunSpec(token="ab12", experiment_id="0", run_name="baseline").to_dict()).run_name
    'baseline'
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from mlflow_green.record import schema
from mlflow_green.record.failures import TransientFailure

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


@dataclass(frozen=True)
class RunSpec:
    """A run to create: everything ``mlflow.start_run`` would send, captured when training started.

    Attributes:
        token: Unique; tagged ``green.run_token`` on the run, so that a retried creation finds it.
        experiment_id: The experiment, when known locally.
        experiment_name: Else its name (``MLFLOW_EXPERIMENT_NAME``): looked up, created if missing.
        run_name: The run's name (None: one like MLflow's own, see :func:`new_run_name`).
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


def find_runs(client: MlflowClient, experiment_id: str, token: str) -> list[Run]:
    """The runs of ``experiment_id`` tagged with ``token`` (deleted ones included), oldest first."""
    from mlflow.entities import ViewType

    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{schema.TAG_RUN_TOKEN}` = '{token}'",
        run_view_type=ViewType.ALL, max_results=10,
    )
    return sorted(runs, key=lambda run: (run.info.start_time or 0, run.info.run_id))


def find_run(client: MlflowClient, experiment_id: str, token: str) -> Run | None:
    """The run created for ``token``, if any: the oldest, the others (duplicates) being deleted."""
    runs = find_runs(client, experiment_id, token)
    if not runs:
        return None
    _delete_duplicates(client, runs, keep=runs[0].info.run_id)
    return runs[0]


def create_run(client: MlflowClient, spec: RunSpec, *, look_first: bool = True) -> Sent:
    """Create the run of ``spec``, or find it if an earlier try did (its answer was lost).

    A client that resends a request whose answer was lost (MLflow's own HTTP client before 3.18, a
    gateway on the way) can make the server create the run twice: every run carrying the token
    but the one returned is deleted.
    """
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
    run_name = spec.run_name or (None if tags.get("mlflow.runName") else new_run_name())
    run = client.create_run(experiment_id, start_time=spec.start_time_ms or None, tags=tags, run_name=run_name)
    try:
        _delete_duplicates(client, find_runs(client, experiment_id, spec.token), keep=run.info.run_id)
    except Exception:  # the run exists and is ours: a duplicate left is found (and deleted) by the next look-up
        pass
    return Sent(run.info.run_id, True, run)


_NAME_DRAWS = random.Random()
"""The draws of :func:`new_run_name`: a generator of our own, never Python's global one."""


def new_run_name() -> str:
    """A run name of MLflow's kind (``bustling-fox-123``, at most 20 characters), drawn from a generator of our own.

    Given no name, MLflow's tracking store draws one from Python's global ``random`` — in this process, for a local
    store — as mlflow-green creates the run inside a fit, after the user's seed: a seeded training's shuffles (Keras
    shuffles a ``PyDataset``'s batches with that generator) would differ with the callback and without it.

    Example:
        >>> state = random.getstate()
        >>> name = new_run_name()
        >>> random.getstate() == state, len(name.split("-")), len(name) <= 20
        (True, 3, True)
    """
    try:
        from mlflow.utils import name_utils

        predicates, nouns = list(name_utils._GENERATOR_PREDICATES), list(name_utils._GENERATOR_NOUNS)
    except (ImportError, AttributeError, TypeError):  # private to MLflow: words of our own if they move
        predicates, nouns = ["calm", "bright", "swift", "quiet", "bold"], ["fox", "owl", "oak", "reef", "lark"]
    name = ""
    for _ in range(10):
        name = f"{_NAME_DRAWS.choice(predicates).lower()}-{_NAME_DRAWS.choice(nouns).lower()}-{_NAME_DRAWS.randint(0, 1000)}"
        if len(name) <= 20:
            return name
    return name[:20]


def _delete_duplicates(client: MlflowClient, runs: list[Run], *, keep: str) -> None:
    for run in runs:
        if run.info.run_id != keep and run.info.lifecycle_stage != "deleted":
            client.delete_run(run.info.run_id)


def _experiment_id(client: MlflowClient, spec: RunSpec) -> str:
    if spec.experiment_id is not None:
        return spec.experiment_id
    if spec.experiment_name:
        experiment = client.get_experiment_by_name(spec.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(spec.experiment_name)
    return "0"


__all__ = ["RunSpec", "Sent", "create_run", "find_run", "find_runs"]
