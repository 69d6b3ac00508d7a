"""The run a user's code names without starting one: MLflow's ``MLFLOW_RUN_ID`` (``mlflow run`` sets it for its
entry point; ``mlflow.start_run()`` resumes it), beside the active run.

Example:
    >>> import os
    >>> os.environ.pop("MLFLOW_RUN_ID", None) and None
    >>> users_run_id() is None   # no active run, no MLFLOW_RUN_ID
    True
"""

from __future__ import annotations

import logging
import os

from mlflow_green.record.bounded_read import read_within
from mlflow_green.record.timeouts import RunTimeouts

logger = logging.getLogger(__name__)

ENV_RUN_ID = "MLFLOW_RUN_ID"
"""MLflow's variable naming the run that ``mlflow.start_run()`` resumes (``mlflow run`` sets it for its entry point)."""


def users_run_id() -> str | None:
    """The run the user's code logs into: the active run, else the one ``MLFLOW_RUN_ID`` names (what ``mlflow run``
    sets, and ``mlflow.start_run()`` would resume); None for neither. No server call."""
    import mlflow

    active = mlflow.active_run()
    if active is not None:
        return active.info.run_id
    return os.environ.get(ENV_RUN_ID, "").strip() or None


def named_run_usable(run_id: str, timeouts: RunTimeouts) -> bool:
    """False, with a warning, when ``MLFLOW_RUN_ID``'s run does not exist or is deleted (``mlflow.start_run()`` would
    raise): a run of our own is started instead. Asked within the start timeout; no answer in time: True."""
    import mlflow

    def stage() -> str | None:
        try:
            return mlflow.MlflowClient().get_run(run_id).info.lifecycle_stage
        except Exception as exc:
            return "missing" if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST" else None

    uri = mlflow.get_tracking_uri()
    found = read_within(stage, timeouts.start_for(uri), what=f"run {run_id} ({ENV_RUN_ID})", consequence="it is logged into")
    if found not in ("missing", "deleted"):
        return True
    logger.warning("mlflow-green: %s=%s names a run that %s on %s (mlflow.start_run() would refuse it): the measurement "
                   "goes into a run of its own instead", ENV_RUN_ID, run_id,
                   "was deleted" if found == "deleted" else "does not exist", uri)
    return False


__all__ = ["ENV_RUN_ID", "named_run_usable", "users_run_id"]
