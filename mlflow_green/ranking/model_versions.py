"""Registered model versions in a leaderboard: a model's versions as records, and each run's version.

:func:`model_records` turns the versions of one registered model into records of their source
runs (a version without a readable source run stays, unranked, with why);
:func:`attach_registered_versions` names each run's latest registered version on a run
leaderboard (an optional decoration: a registry that cannot be read leaves the runs as they are).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from mlflow_green.errors import NotFoundError, RankRequestError
from mlflow_green.ranking.lookups import close_names, list_models, not_found_message
from mlflow_green.ranking.run_record import RunRecord
from mlflow_green.ranking.store_runs import records_by_run_id
from mlflow_green.record.store_access import pages

logger = logging.getLogger("mlflow_green.ranking")

_PAGE_VERSIONS = 10_000
_MAX_VERSIONS_SCANNED = 50_000


def model_records(tracking: Any, registry: Any, name: str, metric: str | None,
                  inference: bool = False) -> tuple[list[RunRecord], str]:
    """(one record per version of model ``name``, the model's name as registered).

    Raises:
        RankRequestError: The store has no model registry.
        NotFoundError: No such model (the message lists close names, or the names there are).
    """
    from mlflow.exceptions import MlflowException

    if registry is None:
        raise RankRequestError("This tracking store has no model registry.")
    try:
        registered = registry.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        names = [m["name"] for m in list_models(registry)]
        raise NotFoundError(not_found_message("registered model", name, names, None),
                            kind="model", name=name, suggestions=close_names(name, names)) from exc
    versions = _model_versions(registry, registered.name)
    aliases_by_version: dict[str, list[str]] = {}
    for alias, version in (getattr(registered, "aliases", None) or {}).items():
        aliases_by_version.setdefault(str(version), []).append(alias)
    run_ids = {v.run_id for v in versions if v.run_id}
    runs = records_by_run_id(tracking, run_ids, metric, inference)
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
    def search(token: str | None) -> Any:
        return registry.search_model_versions(filter_string=_name_filter(name), max_results=_PAGE_VERSIONS,
                                              page_token=token)

    return [v for page in pages(search) for v in page if v.name == name]


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


def attach_registered_versions(records: list[RunRecord], registry: Any) -> list[RunRecord]:
    """Name each run's latest registered model version (skipped for very large registries)."""
    if registry is None or not records:
        return records
    latest: dict[str, Any] = {}
    scanned = 0
    def search(token: str | None) -> Any:
        return registry.search_model_versions(max_results=_PAGE_VERSIONS, page_token=token)

    try:
        for page in pages(search):
            for version in page:
                scanned += 1
                if not version.run_id:
                    continue
                known = latest.get(version.run_id)
                if known is None or (version.creation_timestamp or 0) > (known.creation_timestamp or 0):
                    latest[version.run_id] = version
            if scanned >= _MAX_VERSIONS_SCANNED:
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
