"""``mlflow_green.track()``: measure any block of training code and log it into an MLflow run.

Example:
    >>> import mlflow_green
    >>> with mlflow_green.track() as t:          # doctest: +SKIP
    ...     for epoch in range(3):
    ...         train_one_epoch()
    ...         t.log_step(epoch, samples=60_000)
    >>> t.measurement.energy_j                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from mlflow_green import hardware
from mlflow_green._version import __version__
from mlflow_green.metrics import energy_metrics, run_tags
from mlflow_green.readings import Measurement, Snapshot
from mlflow_green.report import build_report
from mlflow_green.tracker import EnergyTracker, MeterSpec

logger = logging.getLogger(__name__)


def gpu_summary(total: Measurement) -> str:
    """``2x NVIDIA H100 80GB HBM3`` from the GPU devices measured; empty when there were none."""
    labels = [d.label or d.device_id for d in total.devices if d.component == "gpu"]
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{n}x {label}" if n > 1 else label for label, n in counts.items())


class TrackedRun(contextlib.ContextDecorator):
    """Measures a block of code and logs energy, emissions, tags and ``green/report.json``.

    It logs into the active MLflow run, or starts its own run and ends it (``FAILED`` if the
    block raised, with the energy measured so far logged). Configuration errors are raised at
    construction, before the block runs. Writing to MLflow never raises into the block.

    Args:
        run_name: Name of the run started when none is active.
        log_report: Write ``green/report.json`` at the end.
        region, pue, meters, sample_interval_s, intensity_provider: see
            :class:`~mlflow_green.tracker.EnergyTracker`.

    Example:
        >>> import mlflow_green
        >>> @mlflow_green.track(region="FR")       # doctest: +SKIP
        ... def train():
        ...     ...
    """

    def __init__(
        self,
        *,
        run_name: str | None = None,
        log_report: bool = True,
        region: str | None = None,
        pue: float | None = None,
        meters: str | Sequence[MeterSpec] | None = None,
        sample_interval_s: float | None = None,
        intensity_provider: str | None = None,
    ) -> None:
        self._kwargs: dict[str, Any] = dict(
            run_name=run_name,
            log_report=log_report,
            region=region,
            pue=pue,
            meters=meters,
            sample_interval_s=sample_interval_s,
            intensity_provider=intensity_provider,
        )
        self.run_name = run_name
        self.log_report = log_report
        self.tracker = EnergyTracker(
            region=region,
            pue=pue,
            meters=meters,
            sample_interval_s=sample_interval_s,
            intensity_provider=intensity_provider,
        )
        self.run_id: str | None = None
        self.measurement: Measurement | None = None
        self._own_run = False
        self._recorder: Any = None
        self._last_step: int | None = None
        self._last_snapshot: Snapshot | None = None
        self._samples = 0

    def _recreate_cm(self) -> TrackedRun:  # each decorated call measures afresh
        return TrackedRun(**self._kwargs)

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> TrackedRun:
        import mlflow

        from mlflow_green.recorder import RunRecorder

        run = mlflow.active_run()
        if run is None:
            run = mlflow.start_run(run_name=self.run_name)
            self._own_run = True
        self.run_id = run.info.run_id
        self._recorder = RunRecorder(mlflow.MlflowClient(), self.run_id)
        self.tracker.start()
        self._last_snapshot = self.tracker.start_snapshot
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        try:
            self.measurement = self.tracker.stop()
            self._log_totals()
        except Exception as error:  # measurement never crashes training
            logger.warning("mlflow-green: could not finish measuring: %s", error)
        finally:
            if self._own_run:
                import mlflow

                mlflow.end_run(status="FAILED" if exc_type is not None else "FINISHED")
        return False

    # -- progress ----------------------------------------------------------------------------
    def add_samples(self, samples: int) -> None:
        """Count processed samples, for ``green/energy_per_sample_j``."""
        self._samples += int(samples)

    def log_step(self, step: int, *, samples: int | None = None) -> Measurement:
        """Log running totals at ``step`` (e.g. the epoch) and return the energy since the last step."""
        if samples:
            self.add_samples(samples)
        now = self.tracker.snapshot()
        window = now - (self._last_snapshot or self.tracker.start_snapshot)
        total = now - self.tracker.start_snapshot
        self._last_snapshot = now
        self._last_step = int(step)
        cfg = self.tracker.config
        self._recorder.log_metrics(
            energy_metrics(total, cfg.carbon, cfg.pue, window=window, samples=self._samples), step=step
        )
        return window

    def _log_totals(self) -> None:
        assert self.measurement is not None
        cfg = self.tracker.config
        total = self.measurement
        step = self._last_step if self._last_step is not None else 0
        last = self._last_snapshot or self.tracker.start_snapshot
        window = self.tracker.end_snapshot - last
        self._recorder.log_metrics(
            energy_metrics(total, cfg.carbon, cfg.pue, window=window, samples=self._samples), step=step
        )
        self._recorder.log_tags(
            run_tags(
                version=__version__,
                meters=self.tracker.meters_tag(),
                estimated=total.estimated,
                carbon=cfg.carbon,
                pue=cfg.pue,
                cpu=hardware.cpu_model(),
                gpu=gpu_summary(total),
            )
        )
        if self.log_report:
            self._recorder.log_report(build_report(self.tracker, total, extra={"samples": self._samples}))


track = TrackedRun
"""``mlflow_green.track(...)``: measure a block of code (``with`` statement or decorator) and log
it into MLflow. An alias of :class:`TrackedRun`; see there for the arguments."""
