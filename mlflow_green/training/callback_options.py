"""The options every training callback shares, validated at construction (``ConfigError``).

Example:
    >>> options = session_options(quality_metric=None, max_energy_kwh=0.5, max_emissions_kg=None,
    ...     live_metrics=None, inspect_model=True, log_report=True, run_name=None, region="FR")
    >>> options["budget"].max_energy_kwh, options["tracker"].config.carbon.region
    (0.5, 'FRA')
"""

from __future__ import annotations

import logging
import re
from typing import Any

from mlflow_green.measure.tracker import EnergyTracker
from mlflow_green.record.timeouts import RunTimeouts
from mlflow_green.training.budget import EnergyBudget
from mlflow_green.validation import check_bool, check_name

logger = logging.getLogger(__name__)

LOWER_IS_BETTER = re.compile(r"loss|error|mse|mae|perplexity|rmse", re.IGNORECASE)
"""Metric names whose lower values are better: as a quality metric they rank the worse model first."""

CALLBACK_OPTIONS: tuple[str, ...] = (
    "quality_metric", "max_energy_kwh", "max_emissions_kg", "live_metrics", "inspect_model", "log_report", "run_name",
    "region", "pue", "meters", "sample_interval_s", "intensity_provider", "scope", "start_timeout_s", "end_timeout_s",
)
"""The options every training callback (Keras, Lightning, pytorch_lightning, Hugging Face) takes, under
these names, and that ``mlflow_green.autolog(**options)`` passes to each of them. A callback may take
more (Keras: ``samples_per_epoch``)."""

SESSION_DEFAULTS: dict[str, Any] = {
    "quality_metric": None, "max_energy_kwh": None, "max_emissions_kg": None, "live_metrics": None,
    "inspect_model": True, "log_report": True, "run_name": None,
}
"""The callback options :func:`session_options` requires, with the callbacks' defaults."""


def session_options(
    *,
    quality_metric: str | None,
    max_energy_kwh: float | None,
    max_emissions_kg: float | None,
    live_metrics: bool | None,
    inspect_model: bool,
    log_report: bool,
    run_name: str | None,
    start_timeout_s: float | None = None,
    end_timeout_s: float | None = None,
    **tracker_options: Any,
) -> dict[str, Any]:
    """The :class:`~mlflow_green.training.session.TrainingSession` arguments for a callback's options.

    ``tracker_options`` are :class:`~mlflow_green.measure.tracker.EnergyTracker`'s: ``region``,
    ``pue``, ``meters``, ``sample_interval_s``, ``intensity_provider``, ``scope`` (``process``, the
    default, or ``machine``; else ``MLFLOW_GREEN_SCOPE``). ``live_metrics`` and
    ``inspect_model`` are checked here and used by the callback itself. ``start_timeout_s`` and
    ``end_timeout_s`` bound the waiting on MLflow (:class:`~mlflow_green.record.timeouts.RunTimeouts`).
    """
    check_name("quality_metric", quality_metric, example="val_accuracy")
    if quality_metric and LOWER_IS_BETTER.search(quality_metric):
        logger.warning("mlflow-green: quality_metric=%r looks like a metric where lower is better: green/accuracy_per_kwh "
                       "(quality ÷ kWh) ranks higher values first, so the worse model would rank first. Give one where "
                       "higher is better (an accuracy, an F1, an AUC).", quality_metric)
    check_name("run_name", run_name, example="baseline-cnn")
    check_bool("live_metrics", live_metrics, optional=True)
    check_bool("inspect_model", inspect_model)
    check_bool("log_report", log_report)
    return {
        "tracker": EnergyTracker(**tracker_options),
        "quality_metric": quality_metric,
        "budget": EnergyBudget(max_energy_kwh, max_emissions_kg),
        "log_report": log_report,
        "run_name": run_name,
        "timeouts": RunTimeouts.resolve(start_timeout_s=start_timeout_s, end_timeout_s=end_timeout_s),
    }
