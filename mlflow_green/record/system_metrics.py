"""MLflow's system metrics (``system/cpu_utilization_percentage`` …) for a run mlflow-green starts.

``mlflow.start_run`` starts MLflow's ``SystemMetricsMonitor`` for its run when system metrics logging is on
(``mlflow.enable_system_metrics_logging()`` or ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=true``) and stops it at
``mlflow.end_run``. A callback's own run is created through the client (so that a server that is down never stalls
training), which starts none: :func:`start_monitor` starts one as the run is created, and :func:`stop_monitor` stops
it as the run ends, its last samples written within a bounded wait.

Example:
    >>> start_monitor("0123", "sqlite:///mlflow.db") is None  # system metrics logging is off here
    True
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

logger = logging.getLogger(__name__)

MONITOR_WAIT_S = 2.0
"""A run's end waits at most this long (of its end timeout) for the monitor's last samples to be written."""


def system_metrics_enabled() -> bool:
    """True when MLflow logs system metrics for every run it starts."""
    try:
        from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
    except ImportError:  # an MLflow without system metrics
        return False
    return bool(MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get())


def start_monitor(run_id: str, tracking_uri: str | None) -> Any | None:
    """MLflow's system-metrics monitor for ``run_id``, started, if system metrics logging is on; else None.

    Never raises: a monitor that cannot start (``psutil`` missing) is said once, as a warning.
    """
    if not system_metrics_enabled():
        return None
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        try:
            monitor = SystemMetricsMonitor(run_id, tracking_uri=tracking_uri)
        except TypeError:  # MLflow 2: the current tracking URI, which a run of ours is created in
            monitor = SystemMetricsMonitor(run_id)
        monitor.start()
        return monitor
    except Exception as exc:  # the measurement goes on without them
        hint = "; install psutil to have them" if isinstance(exc, ImportError) else ""
        logger.warning("mlflow-green: system metrics logging is on, but MLflow's monitor could not start for run %s "
                       "(%s)%s", run_id, exc, hint)
        return None


def stop_monitor(monitor: Any | None, timeout_s: float | None, end_s: float, *, failing: bool = False) -> float | None:
    """Stop ``monitor`` and write its last samples, waiting at most :data:`MONITOR_WAIT_S` of the run's end budget
    (``timeout_s``, else ``end_s``) — not at all when writes to the server are ``failing`` (MLflow retries for
    minutes: the rest is left to its daemon thread). Returns what is left of the budget for the run's own last writes
    (``timeout_s`` as given when there is no monitor)."""
    if monitor is None:
        return timeout_s
    budget_s, began_s = (end_s if timeout_s is None else timeout_s), time.monotonic()
    stopping = threading.Thread(target=_finish, args=(monitor,), name="mlflow-green-system-metrics", daemon=True)
    stopping.start()
    stopping.join(0.0 if failing else min(MONITOR_WAIT_S, budget_s))
    return max(budget_s - (time.monotonic() - began_s), 0.0)


def _finish(monitor: Any) -> None:
    try:
        monitor.finish()
    except Exception as exc:
        logger.debug("mlflow-green: MLflow's system metrics monitor did not stop cleanly: %r", exc)


__all__ = ["start_monitor", "stop_monitor", "system_metrics_enabled"]
