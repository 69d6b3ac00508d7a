"""Signed trainings and ``green`` evaluations on a real MLflow store, shared by the signed-inference tests
(test_signed_evaluation.py, tests/gates/test_signed_inference_gate.py and the server test).

A "training" is a real scikit-learn fit measured by ``mlflow_green.track()`` (a fake meter: the
hardware is the only fake), its model logged in the same run, signed at the end when a signing key
is set; an evaluation is the real ``green`` evaluator through ``mlflow.models.evaluate``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from sklearn.linear_model import LogisticRegression

import mlflow_green
from mlflow_green.record import schema
from mlflow_green.record.signing import ENV_SIGNING_KEY, ENV_TRUSTED_KEYS
from mlflow_green.testing import FakeMeter

FAST = {"batch_sizes": [1, 8], "warmup_s": 0.0, "min_duration_s": 0.05}
MODEL_NAME = {"name": "model"} if int(mlflow.__version__.split(".")[0]) >= 3 else {"artifact_path": "model"}


@contextlib.contextmanager
def keys_env(signing: Path | None = None, trusted: Path | str | None = None) -> Iterator[None]:
    """``MLFLOW_GREEN_SIGNING_KEY`` / ``MLFLOW_GREEN_TRUSTED_KEYS`` set (or unset) for the block only."""
    before = {name: os.environ.get(name) for name in (ENV_SIGNING_KEY, ENV_TRUSTED_KEYS)}
    for name, value in ((ENV_SIGNING_KEY, signing), (ENV_TRUSTED_KEYS, trusted)):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = str(value)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def digits_frame(rows: int = 200) -> pd.DataFrame:
    from sklearn.datasets import load_digits

    data = load_digits()
    return pd.DataFrame(data.data[:rows] / 16.0, columns=[f"p{i}" for i in range(64)]).assign(label=data.target[:rows])


def train(frame: pd.DataFrame, *, signing: Path | None, iterations: int = 200) -> tuple[str, str]:
    """A measured (and, with a key, signed) training that logs its model: (run id, model URI)."""
    x, y = frame.drop(columns="label"), frame["label"]
    with keys_env(signing), mlflow_green.track(meters=[FakeMeter({"cpu:0": 30.0, "ram:0": 3.0})]) as t:
        model = LogisticRegression(max_iter=iterations).fit(x, y)
        t.log_step(0, samples=len(x))
        info = mlflow.sklearn.log_model(model, **MODEL_NAME, pip_requirements=["scikit-learn"])
    return t.run_id, info.model_uri


def register(model_uri: str, name: str) -> str:
    """Register a logged model as a new version of ``name`` (created if needed); the version number."""
    return str(mlflow.register_model(model_uri, name).version)


def evaluate(uri: str, frame: pd.DataFrame, *, signing: Path | None = None, trusted: Path | str | None = None,
             run_id: str | None = None, evaluators: Any = "green") -> str:
    """Evaluate ``uri`` with the green evaluator (in ``run_id`` when given); the evaluation's run id."""
    config = {**FAST, "meters": [FakeMeter({"cpu:0": 40.0, "ram:0": 4.0})]}
    if evaluators != "green":
        config = {"green": config, "default": {"log_model_explainability": False}}
    with keys_env(signing, trusted):
        with mlflow.start_run(run_id=run_id) if run_id else contextlib.nullcontext():
            result = mlflow.models.evaluate(uri, frame, targets="label", model_type="classifier",
                                            evaluators=evaluators, evaluator_config=config)
    evaluation = getattr(result, "run_id", None)
    return evaluation if evaluation is not None else mlflow.last_active_run().info.run_id


def forged_evaluation(client: MlflowClient, experiment_id: str, model_run_id: str,
                      energy_per_prediction_j: float = 1e-12) -> str:
    """What any user with write access can do: a run that looks like a green evaluation of ``model_run_id``."""
    run_id = client.create_run(experiment_id, run_name="forged-evaluation").info.run_id
    now = int(time.time() * 1000)
    metrics = {schema.INFERENCE_ENERGY_PER_PREDICTION_J: energy_per_prediction_j, schema.INFERENCE_LATENCY_MS: 0.01,
               schema.INFERENCE_POWER_W: 1.0, schema.INFERENCE_THROUGHPUT_PER_S: 1e6}
    tags = {schema.TAG_INFERENCE_BATCH_SIZE: "8", schema.TAG_INFERENCE_MODEL_RUN: model_run_id,
            schema.TAG_INFERENCE_ESTIMATED: "false", schema.TAG_INFERENCE_METERS: "gpu:nvml-counter"}
    client.log_batch(run_id, metrics=[Metric(k, v, now, 8) for k, v in metrics.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])
    client.log_dict(run_id, {"kind": "inference", "forged": True}, schema.INFERENCE_REPORT_ARTIFACT)
    client.set_terminated(run_id)
    return run_id
