"""Which MLflow run a measurement goes into: an explicit run, the active run, or a new one.

Example::

    handle = resolve_run()          # the active run, or a new one we own
    ...
    handle.end("FINISHED")          # ends it only if we started it
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)


@dataclass
class RunHandle:
    """A run to log into, and whether we started it (and so must end it).

    Attributes:
        client: Client of the tracking server holding the run.
        run_id: The run.
        owned: True if mlflow-green started the run and must end it.
        fluent: True if the run was started with ``mlflow.start_run`` (it is the active run).
    """

    client: MlflowClient
    run_id: str
    owned: bool = False
    fluent: bool = False

    def end(self, status: str = "FINISHED", recorder: Any = None) -> None:
        """End the run if we own it (``FINISHED``, ``FAILED`` or ``KILLED``). Never raises.

        If the server cannot be told now, the end is queued on ``recorder`` (a
        :class:`~mlflow_green.record.recorder.RunRecorder`) and sent, or spooled, with its other writes.
        """
        if not self.owned:
            return
        self.owned = False
        try:
            import mlflow

            active = mlflow.active_run()
            if self.fluent and active is not None and active.info.run_id == self.run_id:
                mlflow.end_run(status=status)  # pops the active run first, then tells the server
            else:
                self.client.set_terminated(self.run_id, status=status)
        except Exception as exc:  # measurement never crashes training
            if recorder is not None:
                recorder.terminate(status)
                recorder.close()
            logger.warning("mlflow-green: could not end run %s now (%s); its end is spooled", self.run_id, exc)


def resolve_run(
    *,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    run_name: str | None = None,
    experiment_id: str | None = None,
) -> RunHandle:
    """The run to log into: ``run_id`` if given, else the active run, else a new fluent run.

    Args:
        run_id: An existing run (e.g. the one of Lightning's ``MLFlowLogger``).
        tracking_uri: Tracking URI of ``run_id``'s server (default: the current one).
        run_name: Name of a run we start.
        experiment_id: Experiment of a run we start (default: the active experiment).
    """
    import mlflow
    from mlflow import MlflowClient

    if run_id is not None:
        return RunHandle(MlflowClient(tracking_uri), run_id)
    active = mlflow.active_run()
    if active is not None:
        return RunHandle(MlflowClient(), active.info.run_id)
    run = mlflow.start_run(run_name=run_name, experiment_id=experiment_id)
    return RunHandle(MlflowClient(), run.info.run_id, owned=True, fluent=True)
