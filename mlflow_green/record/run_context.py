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
import os

from mlflow_green.record import schema

logger = logging.getLogger(__name__)


@functools.cache
def green_context_tags() -> dict[str, str]:
    """The hardware and region tags of this process (cached, offline; never raises)."""
    from mlflow_green.measure import hardware

    tags: dict[str, str] = {schema.TAG_HARDWARE_CPU: hardware.cpu_model()}
    gpus = hardware.gpu_names()
    tags[schema.TAG_HARDWARE_GPU] = hardware.summarise_names(gpus) if gpus else "none"
    region = _region()
    if region:
        tags[schema.TAG_REGION] = region
    return tags


def _region() -> str | None:
    """The configured region's canonical code, from the offline table only (no provider call)."""
    from mlflow_green.carbon import ENV_REGION, offline_intensity
    from mlflow_green.errors import ConfigError

    try:
        return offline_intensity(os.environ.get(ENV_REGION) or None).region
    except ConfigError as exc:
        logger.warning("mlflow-green: %s", exc)
        return None


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
