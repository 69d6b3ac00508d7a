"""The ``green`` MLflow evaluator: ``mlflow.models.evaluate(model_uri, data, evaluators="green")``.

Registered under the ``mlflow.model_evaluator`` entry point. It measures the model on the
evaluation data's features with :func:`~mlflow_green.inference.measure_with_options`, then logs
into the evaluation run, all at once and only when the measurement succeeded:

- metrics ``green/inference_energy_per_prediction_j``, ``green/inference_power_w``,
  ``green/inference_latency_ms`` (median per batch), ``green/inference_latency_p95_ms``,
  ``green/inference_throughput_per_s`` and ``green/inference_energy_kwh``, one point per batch
  size (``step`` = batch size; the largest is the headline, the latest value MLflow shows);
- tags ``green.inference_meters``, ``green.inference_scope``, ``green.inference_estimated``,
  ``green.inference_batch_size`` and, in a run with no training measurement, the general
  ``green.*`` tags (meters, scope, estimated, region, hardware);
- the artifact ``green/inference_report.json``;
- with ``MLFLOW_GREEN_SIGNING_KEY`` set, the signature of the run (``green.signature``, the same
  signed manifest as a training run's; :mod:`mlflow_green.inference.signing`);
- on every registered version of the evaluated model, the tag ``green.inference_run``.

``evaluator_config`` keys: see :data:`~mlflow_green.inference.options.EVALUATOR_KEYS`.
``predict_with`` chooses what is called: ``"pyfunc"`` (default: the pyfunc model's ``predict``, what
``mlflow models serve`` runs, MLflow's input conversion included) or ``"raw_model"`` (the
framework model under it, ``get_raw_model()``: Keras ``predict_on_batch``, a torch module in
inference mode, an estimator's ``predict``, the features converted once before the windows). Beside
MLflow's default evaluator (``evaluators=["default", "green"]``, config nested per evaluator),
the quality metrics and the inference figures land in the same run.

The evaluator runs only when named: MLflow's ``evaluators=None`` ("every registered evaluator")
leaves it out, so installing mlflow-green does not slow down existing ``evaluate`` calls.

Example::

    result = mlflow.models.evaluate(model_uri, test_df, targets="label", model_type="classifier",
                                    evaluators=["default", "green"],
                                    evaluator_config={"green": {"batch_sizes": [1, 32]}})
    result.metrics["green/inference_energy_per_prediction_j"]
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from mlflow.models.evaluation import EvaluationResult, ModelEvaluator

from mlflow_green.errors import ConfigError
from mlflow_green.inference.measure import measure_with_options
from mlflow_green.inference.options import InferenceOptions
from mlflow_green.inference.record import inference_tags, report_document, result_metrics, run_level_tags, sweep_metrics
from mlflow_green.inference.registry import model_identity, tag_versions, versions_of
from mlflow_green.inference.signing import EvaluationSigner
from mlflow_green.record import schema

logger = logging.getLogger(__name__)

PREDICT_WITH = ("pyfunc", "raw_model")
"""What the evaluator calls: the pyfunc model, or the framework model under it."""

DEFAULT_QUALITY_METRICS = {"classifier": "accuracy_score", "regressor": "r2_score"}
"""The default evaluator's metric named by ``green.quality_metric`` when the run names none."""


class GreenEvaluator(ModelEvaluator):
    """Measures joules per prediction, latency and throughput of the evaluated model.

    Example::

        mlflow.models.evaluate("models:/digits/3", df, evaluators="green",
                               evaluator_config={"batch_sizes": [1, 64], "min_duration_s": 2})
    """

    name = "green"

    @classmethod
    def can_evaluate(cls, *, model_type: Any = None, evaluator_config: Any = None, **kwargs: Any) -> bool:
        """Any model, when the evaluator was asked for by name (not under ``evaluators=None``)."""
        return not _selected_implicitly()

    def evaluate(
        self,
        *,
        model_type: Any = None,
        dataset: Any = None,
        run_id: str | None = None,
        evaluator_config: Any = None,
        model: Any = None,
        **kwargs: Any,
    ) -> EvaluationResult:
        """Measure, then log everything in one go (nothing when the model raises)."""
        from mlflow import MlflowClient
        from mlflow.models.evaluation.artifacts import JsonEvaluationArtifact

        if evaluator_config is not None and not isinstance(evaluator_config, dict):
            raise ConfigError(f"evaluator_config for the green evaluator must be a dict, got {evaluator_config!r}")
        config = dict(evaluator_config or {})
        options = InferenceOptions.from_config(config)
        quality_metric = config.get("quality_metric")
        if quality_metric is not None and (not isinstance(quality_metric, str) or not quality_metric.strip()):
            raise ConfigError(f"quality_metric must be a metric key such as 'accuracy_score', got {quality_metric!r}")
        predict_with = config.get("predict_with", "pyfunc")
        if predict_with not in PREDICT_WITH:
            raise ConfigError(f"predict_with must be one of {', '.join(PREDICT_WITH)}, got {predict_with!r}")
        tag_registered = config.get("tag_registered_versions", True)
        if not isinstance(tag_registered, bool):
            raise ConfigError(f"tag_registered_versions must be True or False, got {tag_registered!r}")
        if model is None:
            raise ConfigError(
                "the green evaluator measures a model's predictions, but evaluate() was given no model "
                "(static predictions); pass the model or its URI"
            )
        if run_id is None:
            raise ConfigError("the green evaluator needs the evaluation run (run_id) to log into")
        signer = EvaluationSigner.from_env()  # a bad key fails here, before anything is measured
        client = MlflowClient()
        _check_earlier_evaluation(client, run_id, options.headline_batch_size)
        target, data = _target(model, dataset.features_data, predict_with)

        report = measure_with_options(target, data, options)  # raises before anything is logged

        run = client.get_run(run_id)
        identity = model_identity(model, kwargs.get("model_id"))
        document = report_document(report, extra={"evaluated_model": identity, "predict_with": predict_with,
                                                   "run_id": run_id})
        tags = inference_tags(report, model_run_id=identity["run_id"])
        if schema.TAG_METERS not in run.data.tags:  # an evaluation-only run: tag it like any green run
            from mlflow_green.measure import hardware
            from mlflow_green.record.metrics import measured_gpus

            tags.update(run_level_tags(report, cpu=hardware.cpu_model(), gpu=measured_gpus(report.headline.measurement)))
        quality = quality_metric or DEFAULT_QUALITY_METRICS.get(str(model_type))
        if quality and (quality_metric or schema.TAG_QUALITY_METRIC not in run.data.tags):
            tags[schema.TAG_QUALITY_METRIC] = quality
        artifact_uri, logged = _log(client, run_id, report, tags, document)
        if signer is not None:  # signed before any version points at it
            signer.sign(client, run_id, logged, tags, document)

        if tag_registered:
            tagged = tag_versions(client, versions_of(client, model, model_id=identity["model_id"]), run_id)
            if tagged:
                logger.info("mlflow-green: %s tagged %s=%s", ", ".join(tagged), schema.TAG_INFERENCE_RUN, run_id)
        artifacts = {"green_inference_report": JsonEvaluationArtifact(uri=artifact_uri, content=document)}
        return EvaluationResult(metrics=result_metrics(report.headline), artifacts=artifacts, run_id=run_id)


def _check_earlier_evaluation(client: Any, run_id: str, headline_batch_size: int) -> None:
    """Refuse a second evaluation whose headline would not be the run's latest figure.

    Each batch size is logged at step = batch size and the headline (the largest) is the value MLflow
    shows as latest, which ranking and gates read. A run that already holds an evaluation up to a
    larger batch size would keep that earlier figure as its latest, beside this evaluation's
    ``green.inference_batch_size``: ranking and gates would read one evaluation's numbers under the
    other's batch size. Evaluating again with the same or larger batch sizes replaces it cleanly.
    """
    earlier = [m.step for m in client.get_metric_history(run_id, schema.INFERENCE_ENERGY_PER_PREDICTION_J)]
    largest = max(earlier, default=0)
    if largest > headline_batch_size:
        raise ConfigError(
            f"run {run_id} already holds a green evaluation measured up to batch size {largest}; an evaluation "
            f"up to batch size {headline_batch_size} would not be its latest figure, so ranking and gates would "
            f"read the earlier one. Evaluate in a new run (outside mlflow.start_run()), or include batch size "
            f"{largest} or larger in evaluator_config['batch_sizes']"
        )


def _target(model: Any, features: Any, predict_with: str) -> tuple[Any, Any]:
    """The model to call and the data to give it (see ``predict_with``), checked before measuring."""
    if predict_with == "pyfunc":
        return model, features
    from mlflow_green.inference.adapters import as_predictor

    try:
        raw = model.get_raw_model()
    except Exception as exc:
        raise ConfigError(
            f"predict_with='raw_model': this model has no framework model under it ({type(exc).__name__}: {exc}); "
            "use predict_with='pyfunc'"
        ) from exc
    if as_predictor(raw).kind in ("keras", "torch") and hasattr(features, "to_numpy"):
        features = features.to_numpy(dtype="float32")  # as MLflow's Keras and PyTorch flavors convert a DataFrame
    return raw, features


def _log(client: Any, run_id: str, report: Any, tags: dict[str, str], document: dict[str, Any]) -> tuple[str, list[Any]]:
    """The report artifact first, then every metric and tag in one batch (the commit point).

    Returns the report's URI and the metrics logged."""
    import time

    from mlflow.entities import Metric, RunTag

    client.log_dict(run_id, document, schema.INFERENCE_REPORT_ARTIFACT)
    now_ms = int(time.time() * 1000)
    metrics = [
        Metric(key, value, now_ms + index, step)
        for index, (step, values) in enumerate(sweep_metrics(report))
        for key, value in values.items()
    ]
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
    artifact_root = client.get_run(run_id).info.artifact_uri.rstrip("/")
    return f"{artifact_root}/{schema.INFERENCE_REPORT_ARTIFACT}", metrics


def _selected_implicitly() -> bool:
    """True inside ``mlflow.models.evaluate(..., evaluators=None)``: MLflow is trying every evaluator.

    The ``evaluate`` frame still holds ``evaluators=None`` while MLflow resolves "every evaluator"
    (MLflow 3) or runs them (MLflow 2); when named, it holds the names.
    """
    try:
        frame = sys._getframe(1)
    except ValueError:  # pragma: no cover - no caller frame
        return False
    while frame is not None:
        if frame.f_code.co_name == "evaluate" and frame.f_globals.get("__name__") == "mlflow.models.evaluation.base":
            return "evaluators" in frame.f_locals and frame.f_locals["evaluators"] is None
        frame = frame.f_back
    return False
