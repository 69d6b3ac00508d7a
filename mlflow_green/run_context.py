"""MLflow run context provider: tags every MLflow run with the hardware and the carbon region.

Registered under the ``mlflow.run_context_provider`` entry point, so every ``mlflow.start_run``
gets ``green.hardware.cpu``, ``green.hardware.gpu`` and ``green.region``. The values are
computed once per process, offline, and the provider never raises.

The class implements MLflow's ``RunContextProvider`` interface (``in_context`` and ``tags``)
without importing MLflow: MLflow loads this entry point while it is itself being imported,
and importing MLflow here would be circular.
"""

from __future__ import annotations

import functools
import logging

from mlflow_green import schema

logger = logging.getLogger(__name__)


@functools.cache
def green_context_tags() -> dict[str, str]:
    """The hardware and region tags of this process (cached; never raises)."""
    from mlflow_green import hardware

    tags: dict[str, str] = {}
    try:
        tags[schema.TAG_HARDWARE_CPU] = hardware.cpu_model()
    except Exception as exc:  # pragma: no cover - hardware.cpu_model never raises
        logger.debug("cpu model unavailable: %s", exc)
    try:
        gpus = hardware.gpu_names()
        tags[schema.TAG_HARDWARE_GPU] = _summarise(gpus) if gpus else "none"
    except Exception as exc:  # pragma: no cover
        logger.debug("gpu names unavailable: %s", exc)
    tags[schema.TAG_REGION] = _region()
    return tags


def _summarise(names: list[str]) -> str:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n}x {name}" if n > 1 else name for name, n in counts.items())


def _region() -> str:
    from mlflow_green.config import GreenConfig
    from mlflow_green.errors import ConfigError

    try:
        return GreenConfig.resolve().carbon.region
    except ConfigError as exc:
        logger.warning("mlflow-green: %s", exc)
        return "invalid"


class GreenRunContextProvider:
    """Adds ``green.hardware.cpu``, ``green.hardware.gpu`` and ``green.region`` to every run.

    Example:
        >>> GreenRunContextProvider().in_context()
        True
    """

    def in_context(self) -> bool:
        return True

    def tags(self) -> dict[str, str]:
        try:
            return dict(green_context_tags())
        except Exception as exc:  # never break a user's start_run
            logger.warning("mlflow-green: run context tags unavailable: %s", exc)
            return {}
