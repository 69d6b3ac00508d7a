"""What the Lightning callback reads from, or shows in, a ``Trainer`` (small, framework-tolerant helpers)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mlflow_green.formatting import readable_figures

logger = logging.getLogger(__name__)


def show_in_progress_bar(trainer: Any, live: Mapping[str, float]) -> None:
    """Add the figures to those the progress bar shows (written as the CLI writes them)."""
    try:
        figures = trainer.progress_bar_metrics  # the dict the progress bar reads at each refresh
        figures.update({key: format(value, "") for key, value in readable_figures(live).items()})
    except Exception as exc:  # display only: never break training
        logger.debug("mlflow-green: progress bar figures not shown (%s)", exc)


class RootDevice:
    """The device a trainer's strategy trains on, asked when needed."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def __call__(self) -> Any:
        return self.trainer.strategy.root_device


def ends_the_epoch(trainer: Any) -> bool:
    """True when this validation ran after the epoch's last batch (no training follows it before
    ``on_train_epoch_end``); False mid-epoch or if unknown."""
    try:
        return bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)
    except AttributeError:
        return False
