"""Ranking on MLflow store objects: resolve experiments and models, fetch the runs, rank them.

:func:`rank_stores` works on any tracking store: a SQL store goes through the fast path of
:mod:`mlflow_green.ranking.sql`, any other store (or the client-API adapters of
:mod:`mlflow_green.ranking.client`) through its search API. The look-ups the ``/green/`` view
needs (:func:`list_experiments`, :func:`list_metric_keys`, :func:`list_models`) live here too.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from mlflow_green.errors import NotFoundError, RankRequestError
from mlflow_green.ranking.core import Ranking, RunRecord, check_by, gc_paused, rank_records
from mlflow_green.ranking.evaluations import attach_evaluations
from mlflow_green.ranking.run_values import metric_key
from mlflow_green.ranking.sql import _request_error, _sql_metric_keys, _sql_records, _SqlPathUnavailable
from mlflow_green.ranking.store_access import is_sql_store
from mlflow_green.record import schema

logger = logging.getLogger("mlflow_green.ranking")

_PAGE_RUNS = 50_000
_PAGE_VERSIONS = 10_000
_MAX_VERSIONS_SCANNED = 50_000


def rank_stores(
    tracking: Any,
    registry: Any,
    *,
    experiments: Sequence[str] = (),
    model: str | None = None,
    metric: str | None = None,
    filter_string: str | None = None,
    measured_only: bool = False,
    by: str = "training",
) -> Ranking:
    """:func:`rank` on MLflow store objects (what the server uses, in-process).

    Args:
        tracking: A tracking store (``SqlAlchemyStore``: the fast path; any other: its search API).
        registry: A model-registry store (needed for ``model=``; ``None`` skips registry look-ups).
        experiments: Experiment names or ids.
        model: A registered model name instead.
        metric: Quality metric (default: each run's ``green.quality_metric``).
        filter_string: MLflow search filter for the runs.
        measured_only: Leave out estimated runs.
        by: ``training`` (quality per kWh) or ``inference`` (quality per joule per prediction).
    """
    check_by(by)
    with gc_paused():
        return _rank_stores(tracking, registry, experiments, model, metric, filter_string, measured_only, by)


def _rank_stores(tracking: Any, registry: Any, experiments: Sequence[str], model: str | None, metric: str | None,
                 filter_string: str | None, measured_only: bool, by: str) -> Ranking:
    metric = metric_key(metric)
    inference = by == "inference"
    if model is not None:
        records, model_name = _model_records(tracking, registry, model, metric, inference)
        if inference:
            records = attach_evaluations(records, lambda ids: _records_by_run_id(tracking, ids, metric, True))
        rows = rank_records(records, metric=metric, measured_only=measured_only, by=by)
        return Ranking(rows=rows, metric=metric, model_name=model_name, measured_only=measured_only, by=by)
    resolved = resolve_experiments(tracking, experiments)
    ids = [experiment_id for experiment_id, _ in resolved]
    records = _run_records(tracking, ids, metric, filter_string, inference)
    records = _attach_registered_versions(records, registry)
    if inference:
        records = attach_evaluations(records, lambda ids: _records_by_run_id(tracking, ids, metric, True))
    rows = rank_records(records, metric=metric, measured_only=measured_only, by=by)
    return Ranking(rows=rows, metric=metric, experiments=tuple(resolved), measured_only=measured_only,
                   filter_string=filter_string or None, by=by)


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
            raise NotFoundError(_not_found_message("experiment", ref, names, "mlflow experiments search"),
                                kind="experiment", name=ref, suggestions=_close(ref, names))
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
        for record in _search_records(tracking, ids, None):
            keys.update(record.metrics)
    return sorted(k for k in keys if not k.startswith((schema.METRIC_PREFIX, "system/")))


def list_models(registry: Any) -> list[dict[str, Any]]:
    """Registered models by name, as ``{"name", "aliases", "latest_version", "description"}``."""
    models = []
    token = None
    while True:
        page = registry.search_registered_models(max_results=1000, page_token=token)
        for m in page:
            latest = max((int(v.version) for v in (m.latest_versions or [])), default=None)
            models.append({
                "name": m.name,
                "aliases": {a: str(v) for a, v in (getattr(m, "aliases", None) or {}).items()},
                "latest_version": None if latest is None else str(latest),
                "description": m.description or "",
            })
        token = getattr(page, "token", None)
        if not token:
            break
    return sorted(models, key=lambda m: m["name"])


# --- runs ------------------------------------------------------------------------------------


def _run_records(
    tracking: Any, experiment_ids: Sequence[str], metric: str | None, filter_string: str | None,
    inference: bool = False,
) -> list[RunRecord]:
    if is_sql_store(tracking):
        try:
            return _sql_records(tracking, experiment_ids=experiment_ids, metric=metric, filter_string=filter_string,
                                inference=inference)
        except _SqlPathUnavailable as exc:
            logger.info("mlflow-green: SQL fast path unavailable (%s); using the store's search API", exc)
    return _search_records(tracking, experiment_ids, filter_string)


def _search_records(tracking: Any, experiment_ids: Sequence[str], filter_string: str | None) -> list[RunRecord]:
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    records: list[RunRecord] = []
    token = None
    while True:
        try:
            page = tracking.search_runs(
                experiment_ids=list(experiment_ids), filter_string=filter_string or "",
                run_view_type=ViewType.ACTIVE_ONLY, max_results=_PAGE_RUNS, page_token=token,
            )
        except MlflowException as exc:
            raise _request_error(exc, filter_string) from exc
        records.extend(_record_from_run(run) for run in page)
        token = getattr(page, "token", None)
        if not token:
            return records


def _record_from_run(run: Any) -> RunRecord:
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    info, data = run.info, run.data
    return RunRecord(
        run_id=info.run_id,
        run_name=info.run_name or data.tags.get(MLFLOW_RUN_NAME) or info.run_id[:8],
        experiment_id=str(info.experiment_id),
        metrics=dict(data.metrics),
        tags=dict(data.tags),
        status=info.status,
        start_time_ms=info.start_time,
    )


# --- registered models -----------------------------------------------------------------------


def _model_records(tracking: Any, registry: Any, name: str, metric: str | None,
                   inference: bool = False) -> tuple[list[RunRecord], str]:
    from mlflow.exceptions import MlflowException

    if registry is None:
        raise RankRequestError("This tracking store has no model registry.")
    try:
        registered = registry.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        names = [m["name"] for m in list_models(registry)]
        raise NotFoundError(_not_found_message("registered model", name, names, None),
                            kind="model", name=name, suggestions=_close(name, names)) from exc
    versions = _model_versions(registry, registered.name)
    aliases_by_version: dict[str, list[str]] = {}
    for alias, version in (getattr(registered, "aliases", None) or {}).items():
        aliases_by_version.setdefault(str(version), []).append(alias)
    run_ids = {v.run_id for v in versions if v.run_id}
    runs = _records_by_run_id(tracking, run_ids, metric, inference)
    records = []
    for version in versions:
        source = runs.get(version.run_id) if version.run_id else None
        own = set(getattr(version, "aliases", None) or ())
        aliases = tuple(sorted(own | set(aliases_by_version.get(str(version.version), ()))))
        common = {
            "model_name": registered.name,
            "model_version": str(version.version),
            "model_aliases": aliases,
            "version_tags": dict(version.tags or {}),
        }
        if source is None:
            missing = f"source run {version.run_id} not found" if version.run_id else "version has no source run"
            records.append(RunRecord(run_id=version.run_id or "", run_name=f"version {version.version}",
                                     experiment_id="", metrics={}, tags={}, missing=missing, **common))
        else:
            records.append(replace(source, **common))
    return records, registered.name


def _model_versions(registry: Any, name: str) -> list[Any]:
    versions: list[Any] = []
    token = None
    while True:
        page = registry.search_model_versions(
            filter_string=_name_filter(name), max_results=_PAGE_VERSIONS, page_token=token
        )
        versions.extend(v for v in page if v.name == name)
        token = getattr(page, "token", None)
        if not token:
            return versions


def _name_filter(name: str) -> str:
    """A model-version filter matching ``name``. MLflow's filter strings cannot escape a quote, so a
    name holding both ``'`` and ``"`` is matched with ``LIKE`` (each quote and backslash as ``_``);
    the caller keeps only exact matches."""
    if "'" not in name:
        return f"name='{name}'"
    if '"' not in name:
        return f'name="{name}"'
    pattern = name.replace("\\", "_").replace("'", "_")
    return f"name LIKE '{pattern}'"


def _records_by_run_id(tracking: Any, run_ids: Iterable[str], metric: str | None,
                       inference: bool = False) -> dict[str, RunRecord]:
    from mlflow.exceptions import MlflowException

    run_ids = sorted(set(run_ids))
    if not run_ids:
        return {}
    if is_sql_store(tracking):
        try:
            return {r.run_id: r for r in _sql_records(tracking, run_ids=run_ids, metric=metric, inference=inference)}
        except _SqlPathUnavailable as exc:
            logger.info("mlflow-green: SQL fast path unavailable (%s)", exc)
    records = {}
    for run_id in run_ids:
        try:
            records[run_id] = _record_from_run(tracking.get_run(run_id))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    return records


def _attach_registered_versions(records: list[RunRecord], registry: Any) -> list[RunRecord]:
    """Name each run's latest registered model version (skipped for very large registries)."""
    if registry is None or not records:
        return records
    latest: dict[str, Any] = {}
    token, scanned = None, 0
    try:
        while True:
            page = registry.search_model_versions(max_results=_PAGE_VERSIONS, page_token=token)
            for version in page:
                scanned += 1
                if not version.run_id:
                    continue
                known = latest.get(version.run_id)
                if known is None or (version.creation_timestamp or 0) > (known.creation_timestamp or 0):
                    latest[version.run_id] = version
            token = getattr(page, "token", None)
            if not token or scanned >= _MAX_VERSIONS_SCANNED:
                break
    except Exception as exc:  # the registry is optional for a run leaderboard
        logger.info("mlflow-green: registry not read (%s)", exc)
        return records
    wanted = {record.run_id for record in records}
    latest = {run_id: version for run_id, version in latest.items() if run_id in wanted}
    if not latest:
        return records
    aliases = _aliases_by_version(registry, {version.name for version in latest.values()})
    out = []
    for record in records:
        version = latest.get(record.run_id)
        if version is None:
            out.append(record)
        else:
            out.append(replace(record, model_name=version.name, model_version=str(version.version),
                               model_aliases=aliases.get((version.name, str(version.version)), ()),
                               version_tags=dict(version.tags or {})))
    return out


def _aliases_by_version(registry: Any, names: Iterable[str]) -> dict[tuple[str, str], tuple[str, ...]]:
    """``(model, version) -> aliases`` (model-version search results do not carry aliases)."""
    found: dict[tuple[str, str], list[str]] = {}
    for name in names:
        try:
            model = registry.get_registered_model(name)
        except Exception as exc:  # optional decoration of a run leaderboard
            logger.info("mlflow-green: aliases of %s not read (%s)", name, exc)
            continue
        for alias, version in (getattr(model, "aliases", None) or {}).items():
            found.setdefault((name, str(version)), []).append(alias)
    return {key: tuple(sorted(values)) for key, values in found.items()}


# --- experiments and messages ----------------------------------------------------------------


def _iter_experiments(tracking: Any) -> Iterator[Any]:
    from mlflow.entities import ViewType

    token = None
    while True:
        page = tracking.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def _close(ref: str, names: Sequence[str]) -> list[str]:
    lowered = {n.lower(): n for n in names}
    close = [lowered[c] for c in difflib.get_close_matches(ref.lower(), list(lowered), n=5, cutoff=0.5)]
    close += [n for n in names if ref.lower() in n.lower() and n not in close]
    return close[:5]


def _not_found_message(kind: str, ref: str, names: Sequence[str], command: str | None) -> str:
    """``command`` lists them (it must exist: MLflow has ``mlflow experiments search`` but no command
    for registered models, whose names are listed here instead)."""
    close = _close(ref, names)
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
