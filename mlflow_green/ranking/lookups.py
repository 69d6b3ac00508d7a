"""What the ``/green/`` view and the errors look up: experiments, registered models, metric keys.

:func:`resolve_experiments` turns names or ids into experiments, and a name that does not exist
into a :class:`~mlflow_green.errors.NotFoundError` whose message lists the close names
(:func:`not_found_message`); :func:`list_experiments`, :func:`list_models` and
:func:`list_metric_keys` fill the view's pickers.

Example:
    >>> not_found_message("experiment", "digitz", ["digits", "cifar"], "mlflow experiments search")
    "No experiment named 'digitz'. Did you mean: 'digits'?"
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from typing import Any

from mlflow_green.errors import NotFoundError
from mlflow_green.ranking.sql import _sql_metric_keys
from mlflow_green.ranking.store_runs import search_records
from mlflow_green.record import schema
from mlflow_green.record.store_access import is_sql_store, pages


def resolve_experiments(tracking: Any, refs: Sequence[str]) -> list[tuple[str, str]]:
    """``(id, name)`` of each experiment, given by name or by id.

    Raises:
        NotFoundError: One does not exist; the message lists close matches.
    """
    from mlflow.exceptions import MlflowException

    resolved: list[tuple[str, str]] = []
    for ref in refs:
        experiment = None
        try:
            experiment = tracking.get_experiment_by_name(ref)
        except MlflowException:
            experiment = None
        if experiment is None and re.fullmatch(r"[\w-]{1,128}", ref):
            try:
                experiment = tracking.get_experiment(ref)
            except MlflowException:
                experiment = None
        if experiment is None:
            names = [e.name for e in _iter_experiments(tracking)]
            raise NotFoundError(not_found_message("experiment", ref, names, "mlflow experiments search"),
                                kind="experiment", name=ref, suggestions=close_names(ref, names))
        if experiment.lifecycle_stage != "active":
            raise NotFoundError(
                f"Experiment {experiment.name!r} (id {experiment.experiment_id}) is deleted. "
                f"Restore it with: mlflow experiments restore --experiment-id {experiment.experiment_id}",
                kind="experiment", name=ref, suggestions=[],
            )
        if experiment.experiment_id not in (i for i, _ in resolved):
            resolved.append((str(experiment.experiment_id), experiment.name))
    return resolved


def list_experiments(tracking: Any) -> list[dict[str, Any]]:
    """Active experiments, most recently updated first, as ``{"id", "name", "last_update_time"}``."""
    experiments = sorted(_iter_experiments(tracking), key=lambda e: -(e.last_update_time or 0))
    return [{"id": str(e.experiment_id), "name": e.name, "last_update_time": e.last_update_time} for e in experiments]


def list_metric_keys(tracking: Any, experiments: Sequence[str]) -> list[str]:
    """The metric keys logged by the experiments' active runs that could be quality metrics
    (all but ``green/`` and MLflow's ``system/`` metrics), sorted.

    Raises:
        NotFoundError: An experiment does not exist.
    """
    ids = [experiment_id for experiment_id, _ in resolve_experiments(tracking, experiments)]
    keys: set[str] = set()
    if is_sql_store(tracking):
        keys.update(_sql_metric_keys(tracking, ids))
    else:
        for record in search_records(tracking, ids, None):
            keys.update(record.metrics)
    return sorted(k for k in keys if not k.startswith((schema.METRIC_PREFIX, "system/")))


def list_models(registry: Any) -> list[dict[str, Any]]:
    """Registered models by name, as ``{"name", "aliases", "latest_version", "description"}``."""
    models = []
    for page in pages(lambda token: registry.search_registered_models(max_results=1000, page_token=token)):
        for m in page:
            latest = max((int(v.version) for v in (m.latest_versions or [])), default=None)
            models.append({
                "name": m.name,
                "aliases": {a: str(v) for a, v in (getattr(m, "aliases", None) or {}).items()},
                "latest_version": None if latest is None else str(latest),
                "description": m.description or "",
            })
    return sorted(models, key=lambda m: m["name"])


def _iter_experiments(tracking: Any) -> Iterator[Any]:
    from mlflow.entities import ViewType

    for page in pages(lambda token: tracking.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                                                page_token=token)):
        yield from page


def close_names(ref: str, names: Sequence[str]) -> list[str]:
    """Up to five of ``names`` close to ``ref`` (spelling first, then containing it), any case."""
    lowered = {n.lower(): n for n in names}
    close = [lowered[c] for c in difflib.get_close_matches(ref.lower(), list(lowered), n=5, cutoff=0.5)]
    close += [n for n in names if ref.lower() in n.lower() and n not in close]
    return close[:5]


def not_found_message(kind: str, ref: str, names: Sequence[str], command: str | None) -> str:
    """Why ``ref`` is not found, with the close names, else ``command`` to list them (it must exist:
    MLflow has ``mlflow experiments search`` but no command for registered models, whose names
    are listed here instead)."""
    close = close_names(ref, names)
    if close:
        hint = "Did you mean: " + ", ".join(repr(c) for c in close) + "?"
    elif names and command is None:
        shown = sorted(names)[:10]
        hint = f"{len(names)} exist: " + ", ".join(shown) + (", …" if len(names) > len(shown) else "") + "."
    elif names:
        hint = f"{len(names)} exist; list them with: {command}"
    else:
        hint = "There is none on this tracking server (check MLFLOW_TRACKING_URI)."
    return f"No {kind} named {ref!r}. {hint}"
