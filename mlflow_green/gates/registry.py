"""The gates' MLflow boundary: reads a version, its source run and the current alias holder; writes tags.

Two implementations of one small interface (:mod:`~mlflow_green.gates.registry_access`, importable
from here): :class:`ClientRegistry` over an ``MlflowClient`` (the Python API and the CLI) and
:class:`StoreRegistry` over the server's own tracking and registry stores (server-side
enforcement, no HTTP round trip). :func:`gather_evidence` reads what the rules need through either.

Example::

    from mlflow import MlflowClient
    registry = ClientRegistry(MlflowClient())
    evidence = gather_evidence(registry, "digits", "3", target_alias="champion", with_incumbent=True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mlflow_green.gates.evidence import Evidence, Incumbent
from mlflow_green.gates.holders import parse_holder
from mlflow_green.gates.inference_evidence import find_inference
from mlflow_green.gates.prompts import is_prompt_version, looks_like_prompt
from mlflow_green.gates.registry_access import ClientRegistry, Registry, StoreRegistry, is_missing
from mlflow_green.record import schema
from mlflow_green.record.signing import TrustedKeys, verify

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

    from mlflow_green.record.signing import Verification

__all__ = ["ClientRegistry", "Registry", "StoreRegistry", "gather_evidence"]


def _read_run(registry: Registry, run_id: str | None, source: str | None) -> tuple[Run | None, str | None]:
    if not run_id:
        where = f" (registered from {source})" if source else ""
        return None, f"the version has no source run{where}; nothing was measured"
    try:
        return registry.run(run_id), None
    except Exception as exc:
        if is_missing(exc):
            return None, f"source run {run_id} not found"
        raise


def _holder_accuracy(registry: Registry, holder: ModelVersion) -> float | None:
    run, _ = _read_run(registry, holder.run_id, holder.source)
    return None if run is None else run.data.metrics.get(schema.ACCURACY_PER_KWH)


def _incumbent(registry: Registry, name: str, kind: str, target: str, model_tags: Mapping[str, str]) -> Incumbent | None:
    """The version holding the alias or stage now; else the last one the gate promoted there."""
    holder = registry.version_by_alias(name, target) if kind == "alias" else registry.latest_in_stage(name, target)
    memory = parse_holder(model_tags.get(schema.gate_holder_tag(kind, target)))
    label = f"{kind} {target}"
    if holder is not None:
        recorded = memory.accuracy_per_kwh if memory is not None and memory.version == str(holder.version) else None
        return Incumbent(str(holder.version), _holder_accuracy(registry, holder), target=label, recorded_accuracy_per_kwh=recorded)
    if memory is None:
        return None
    try:
        live = _holder_accuracy(registry, registry.model_version(name, memory.version))
    except Exception as exc:  # the remembered version was deleted: its recorded value stands
        if not is_missing(exc):
            raise
        live = None
    return Incumbent(memory.version, live, remembered=True, target=label, recorded_accuracy_per_kwh=memory.accuracy_per_kwh)


def _verify(registry: Registry, run: Run, trusted_keys: TrustedKeys) -> Verification:
    """Verify a run's signature with its artifacts read through ``registry``."""
    return verify(run.info.run_id, dict(run.data.metrics), dict(run.data.tags),
                  lambda path: registry.read_artifact(run, path), trusted_keys)


def gather_evidence(
    registry: Registry,
    name: str,
    version: str,
    *,
    target_alias: str | None = None,
    target_stage: str | None = None,
    with_incumbent: bool = False,
    trusted_keys: TrustedKeys | None = None,
    with_inference: bool = False,
) -> Evidence:
    """Everything the rules need about ``name`` version ``version``.

    Args:
        registry: Where to read.
        name: Registered model name.
        version: Version to check.
        target_alias: The alias the version is checked for (for ``beat_current_by_percent``).
        target_stage: The canonical stage the version is checked for.
        with_incumbent: Also read the version that holds the alias or stage now, or else the
            one the gate remembers holding it last (a few extra reads; only when the policy has
            ``beat_current_by_percent``).
        trusted_keys: Verify the run's signature against these keys (only when the policy has
            ``require_signed``; reads the manifest and the reports) — and the inference
            evaluation's, when ``with_inference`` found one in another run.
        with_inference: Also read the version's inference evaluation (``green.inference_run``;
            one extra run read, only when the policy has an inference rule).

    Raises:
        mlflow.exceptions.MlflowException: The model or version does not exist, or the store failed.
    """
    model_version = registry.model_version(name, version)
    model_tags: dict[str, str] | None = None

    def tags_of_model() -> dict[str, str]:
        nonlocal model_tags
        if model_tags is None:
            model = registry.registered_model(name)
            # ``RegisteredModel.tags`` hides MLflow's prompt flag; ``_tags`` holds every tag
            model_tags = dict(getattr(model, "_tags", None) or model.tags or {})
        return model_tags

    common = {"version": str(model_version.version), "version_tags": dict(model_version.tags or {})}
    if looks_like_prompt(model_version) and is_prompt_version(model_version, tags_of_model()):
        return Evidence(run_id=None, prompt=True, **common)
    run, missing = _read_run(registry, model_version.run_id, model_version.source)
    metrics = dict(run.data.metrics) if run is not None else {}
    tags = dict(run.data.tags) if run is not None else {}
    target = f"alias {target_alias}" if target_alias is not None else f"stage {target_stage}" if target_stage else None
    incumbent = None
    if with_incumbent and target is not None:
        kind, which = ("alias", target_alias) if target_alias is not None else ("stage", target_stage)
        incumbent = _incumbent(registry, name, kind, str(which), tags_of_model())
    signature = _verify(registry, run, trusted_keys) if trusted_keys is not None and run is not None else None
    inference = None
    if with_inference:
        evaluations: dict[str, Run | None] = {}

        def read_evaluation(run_id: str) -> Run | None:
            if run_id not in evaluations:
                evaluations[run_id] = _read_run(registry, run_id, None)[0]
            return evaluations[run_id]

        inference = find_inference(
            name, str(model_version.version), common["version_tags"], model_version.run_id or None, metrics, tags,
            read_run=read_evaluation,
        )
        if trusted_keys is not None and inference.missing is None and inference.run_id is not None:
            if run is not None and inference.run_id == run.info.run_id:  # evaluated in its training run
                inference = dataclasses.replace(inference, signature=signature)
            else:
                evaluation = read_evaluation(inference.run_id)
                if evaluation is not None:
                    inference = dataclasses.replace(inference, signature=_verify(registry, evaluation, trusted_keys))
    return Evidence(
        run_id=model_version.run_id or None,
        metrics=metrics,
        tags=tags,
        missing_run=missing,
        target=target,
        incumbent=incumbent,
        signature=signature,
        inference=inference,
        **common,
    )
