"""The MLflow boundary: writes metrics, tags and the report of one run through an MlflowClient.

Writing never raises into training: a failure is logged as a warning and reported by the
return value (spooling for replay is the job of the reliability layer).

Example::

    from mlflow import MlflowClient
    recorder = RunRecorder(MlflowClient(), run_id=run.info.run_id)
    recorder.log_metrics({"green/energy_kwh": 0.1}, step=0)   # True when written
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlflow_green import schema

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

_MAX_METRICS_PER_BATCH = 1000
_MAX_TAGS_PER_BATCH = 100


class RunRecorder:
    """Writes green metrics, tags and ``green/report.json`` into one MLflow run.

    Args:
        client: The client of the tracking server holding the run.
        run_id: The run to write into.
    """

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.failures: list[str] = []
        self._pending: list[Any] = []

    def log_metrics(
        self, metrics: Mapping[str, float], step: int, timestamp_ms: int | None = None, *, wait: bool = True
    ) -> bool:
        """Log metrics at ``step`` in batches; non-finite values are dropped with a warning.

        With ``wait=False`` the batch is queued on MLflow's asynchronous logging (about 0.1 ms
        instead of several on the training thread); :meth:`flush` waits for it.
        """
        from mlflow.entities import Metric

        timestamp_ms = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        entries = []
        for key, value in metrics.items():
            if value is None or not math.isfinite(float(value)):
                logger.warning("mlflow-green: not logging %s=%r (not a finite number)", key, value)
                continue
            entries.append(Metric(key, float(value), timestamp_ms, int(step)))
        ok = True
        for start in range(0, len(entries), _MAX_METRICS_PER_BATCH):
            chunk = entries[start : start + _MAX_METRICS_PER_BATCH]
            if wait:
                ok &= self._call("log_batch", metrics=chunk)
            else:
                ok &= self._call_raw(
                    lambda chunk=chunk: self._pending.append(
                        self.client.log_batch(self.run_id, metrics=chunk, synchronous=False)
                    )
                )
        return ok

    def flush(self) -> bool:
        """Wait for every queued asynchronous write; True if all of them succeeded."""
        pending, self._pending = self._pending, []
        ok = True
        for operation in pending:
            ok &= self._call_raw(operation.wait)
        return ok

    def log_tags(self, tags: Mapping[str, str]) -> bool:
        """Set run tags in batches."""
        from mlflow.entities import RunTag

        entries = [RunTag(key, str(value)) for key, value in tags.items()]
        ok = True
        for start in range(0, len(entries), _MAX_TAGS_PER_BATCH):
            ok &= self._call("log_batch", tags=entries[start : start + _MAX_TAGS_PER_BATCH])
        return ok

    def log_report(self, report: Mapping[str, Any]) -> bool:
        """Write ``green/report.json``."""
        return self._call_raw(lambda: self.client.log_dict(self.run_id, dict(report), schema.REPORT_ARTIFACT))

    def _call(self, method: str, **kwargs: Any) -> bool:
        return self._call_raw(lambda: getattr(self.client, method)(self.run_id, **kwargs))

    def _call_raw(self, fn: Any) -> bool:
        try:
            fn()
            return True
        except Exception as exc:  # measurement never crashes training
            message = f"{type(exc).__name__}: {exc}"
            self.failures.append(message)
            logger.warning("mlflow-green: could not write to MLflow run %s: %s", self.run_id, message)
            return False
