"""The cache of resolved power models: one JSON file per machine and CodeCarbon version.

Importing CodeCarbon and matching its 5 000-row CPU table costs about half a second, so
CodeCarbon's model (:mod:`mlflow_green.measure.codecarbon_model`) is resolved once per machine
(host identity: hostname + machine id) and CodeCarbon version, and kept as JSON in
``$MLFLOW_GREEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlflow-green``, else ``~/.cache/mlflow-green``.
Later processes evaluate the cached model without importing CodeCarbon. A cached model is
resolved again when CodeCarbon is upgraded or the machine changes (CPU model, CPU count, RAM
size, a new SLURM job), or when the file is damaged. Tests and benchmarks point
``MLFLOW_GREEN_CACHE_DIR`` at a temporary folder.

Example:
    >>> import tempfile
    >>> cached_model(Path(tempfile.mkdtemp())) is None      # an empty cache never resolves
    True
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow_green import codecarbon_data
from mlflow_green.cache_dir import cache_dir, write_atomically
from mlflow_green.measure import hardware, host
from mlflow_green.measure.power_model import PowerModel

logger = logging.getLogger(__name__)

_memo: dict[tuple[str, str], PowerModel] = {}


def machine_facts() -> dict[str, Any]:
    """Cheap facts that, if they change, invalidate a cached model (no CodeCarbon import)."""
    facts: dict[str, Any] = {
        "host": host.host_id(),
        "cpu_model": hardware.cpu_model(),
        "logical_cpus": os.cpu_count() or 1,
        "ram_total_bytes": hardware.total_ram_bytes(),
    }
    if os.environ.get("SLURM_JOB_ID"):  # CodeCarbon counts a SLURM job's CPUs and memory
        facts["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return facts


def cache_path(directory: Path, facts: Mapping[str, Any], version: str) -> Path:
    """The cache file for one machine and CodeCarbon version."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{facts['host']}-codecarbon-{version or 'none'}")
    return directory / f"power-model-{name}.json"


def cached_model(directory: Path | None = None) -> PowerModel | None:
    """The cached model for this machine and CodeCarbon version, or None (never resolves, never raises)."""
    try:
        directory = cache_dir() if directory is None else directory
        facts = machine_facts()
        version = codecarbon_data.version() or ""
        key = (str(directory), json.dumps(facts, sort_keys=True) + version)
        if key in _memo:
            return _memo[key]
        path = cache_path(directory, facts, version)
        model = PowerModel.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.debug("no usable cached power model: %s", exc)
        return None
    if dict(model.facts) != facts or model.codecarbon_version != version:
        return None
    _memo[key] = model
    return model


def load_power_model(directory: Path | None = None) -> tuple[PowerModel, str]:
    """This machine's model and where it came from (``cache <path>`` / ``resolved now``). Never raises."""
    directory = cache_dir() if directory is None else directory
    found = cached_model(directory)
    if found is not None:
        return found, f"cache {cache_path(directory, found.facts, found.codecarbon_version)}"
    from mlflow_green.measure.codecarbon_model import resolve  # imports CodeCarbon: only on a cold cache

    facts = machine_facts()
    model = resolve(facts=facts)
    if model.cpu_rule == "fallback":  # never cache a fallback: retry CodeCarbon next time
        return model, "fallback (CodeCarbon could not be used)"
    path = cache_path(directory, facts, model.codecarbon_version)
    try:
        write_atomically(path, json.dumps(model.to_json(), indent=1))  # concurrent ranks never read half a file
        where = f"resolved now through CodeCarbon, cached in {path}"
    except OSError as exc:
        logger.warning("mlflow-green: cannot cache the power model in %s (%s); it is resolved again next time",
                       directory, exc)
        where = "resolved now through CodeCarbon (not cached: folder not writable)"
    _memo[(str(directory), json.dumps(facts, sort_keys=True) + model.codecarbon_version)] = model
    return model, where
