"""Registered model versions with green metrics and tags, for testing gate policies.

Example::

    version = register_version(client, experiment_id, "digits",
                               {"green/energy_kwh": 0.2}, {"green.estimated": "false"})
    gates.check("digits", version, "green-policy.toml", alias="champion", client=client)
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException


def register_version(
    client: MlflowClient,
    experiment_id: str,
    model: str,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    *,
    with_run: bool = True,
) -> str:
    """Log a finished run with ``metrics`` (step 0) and ``tags``; register it as a new version of ``model``.

    The registered model is created if needed. ``with_run=False`` registers a version without a
    source run (gates fail such a version). Returns the version number as a string.
    """
    try:
        client.get_registered_model(model)
    except MlflowException:
        client.create_registered_model(model)
    if not with_run:
        return str(client.create_model_version(model, source="/models/elsewhere").version)
    run_id = client.create_run(experiment_id).info.run_id
    now_ms = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), now_ms, 0) for key, value in (metrics or {}).items()],
        tags=[RunTag(key, value) for key, value in (tags or {}).items()],
    )
    client.set_terminated(run_id)
    return str(client.create_model_version(model, source=f"runs:/{run_id}/model", run_id=run_id).version)
