"""A user's training script, unchanged but for the autolog lines: run by test_autolog_with_mlflow.py.

    python autolog_scenario.py FRAMEWORK OUT_DIR

First ``mlflow-first``: ``mlflow.autolog()`` then ``mlflow_green.autolog()``, before the framework
is imported (for Keras and transformers MLflow patches on import too; ``mlflow.pytorch.autolog()``
imports Lightning itself); the training runs; both are disabled. Then ``green-first``:
``mlflow_green.autolog()`` then MLflow's, the framework imported already; the training runs
again. Writes OUT_DIR/result.json: for each order, every run of its experiment with its metric
histories.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

import mlflow_green  # noqa: E402

FRAMEWORK_MODULE = {"keras": "keras", "lightning": "lightning", "transformers": "transformers"}


def mlflow_autolog(framework: str) -> None:
    if framework == "lightning":  # MLflow 3.17's universal autolog() cannot enable Lightning (its own import bug)
        mlflow.pytorch.autolog(log_models=False, checkpoint=False, silent=True)
    else:
        mlflow.autolog(log_models=False, log_datasets=False, silent=True)


def train(framework: str, out: Path) -> None:
    """The training code: no mlflow-green line in it."""
    if framework == "keras":
        import keras
        from sklearn.datasets import load_digits

        data = load_digits()
        x, y = (data.data / 16.0).astype("float32"), data.target
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x[:1400], y[:1400], validation_data=(x[1400:], y[1400:]), epochs=2, batch_size=128, verbose=0)
    elif framework == "lightning":
        import lightning
        from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs

        train_loader, val_loader = loaders()
        lightning.Trainer(max_epochs=2, **quiet_trainer_kwargs()).fit(digits_classifier(), train_loader, val_loader)
    else:
        from hf_models import TokenDataset, accuracy, bert_classifier, training_args
        from transformers import Trainer

        Trainer(model=bert_classifier(), args=training_args(out / "hf"), train_dataset=TokenDataset(64, seed=1),
                eval_dataset=TokenDataset(32, seed=2), compute_metrics=accuracy).train()


def run_order(framework: str, order: str, out: Path) -> list[dict]:
    experiment_id = mlflow.create_experiment(order, artifact_location=(out / order).as_uri())
    mlflow.set_experiment(experiment_id=experiment_id)
    if order == "mlflow-first":
        mlflow_autolog(framework)
        mlflow_green.autolog()
    else:
        importlib.import_module(FRAMEWORK_MODULE[framework])
        mlflow_green.autolog()
        mlflow_autolog(framework)
    train(framework, out / order)
    mlflow_green.autolog(disable=True)
    mlflow.autolog(disable=True)
    client = MlflowClient()
    runs = []
    for run in client.search_runs([experiment_id]):
        histories = {key: sorted([m.step, m.value] for m in client.get_metric_history(run.info.run_id, key))
                     for key in run.data.metrics}
        runs.append({"status": run.info.status, "tags": run.data.tags, "histories": histories})
    return runs


def main() -> None:
    framework, out = sys.argv[1], Path(sys.argv[2])
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    result = {order: run_order(framework, order, out) for order in ("mlflow-first", "green-first")}
    (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
