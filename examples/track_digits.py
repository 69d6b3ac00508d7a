"""Train three scikit-learn MLPs of different sizes on the digits data set, measured with
``mlflow_green.track()`` and logged to MLflow, then print accuracy per kWh.

Runs offline on data shipped with scikit-learn. Usage::

    python examples/track_digits.py            # logs to sqlite:///mlflow.db
    mlflow ui --backend-store-uri sqlite:///mlflow.db
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import mlflow
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

import mlflow_green
from mlflow_green.record import schema
from mlflow_green.units import joules_to_kwh

EXPERIMENT = "green-digits-sklearn"
EPOCHS = 15
SIZES = {"mlp-small": (16,), "mlp-medium": (64,), "mlp-large": (256, 128)}


def train(name: str, hidden: tuple[int, ...], data: tuple[np.ndarray, ...]) -> None:
    x_train, x_val, y_train, y_val = data
    classes = np.unique(y_train)
    model = MLPClassifier(hidden_layer_sizes=hidden, random_state=0, learning_rate_init=1e-3)
    with mlflow.start_run(run_name=name), mlflow_green.track() as tracked:
        mlflow.log_params({"hidden_layers": str(hidden), "epochs": EPOCHS})
        for epoch in range(EPOCHS):
            for start in range(0, len(x_train), 32):
                model.partial_fit(x_train[start : start + 32], y_train[start : start + 32], classes=classes)
            accuracy = float(model.score(x_val, y_val))
            mlflow.log_metric("val_accuracy", accuracy, step=epoch)
            tracked.log_step(epoch, samples=len(x_train))
        mlflow.set_tag(schema.TAG_QUALITY_METRIC, "val_accuracy")
    energy_kwh = joules_to_kwh(tracked.measurement.energy_j) if tracked.measurement else float("nan")
    print(f"{name:<11} val_accuracy={accuracy:.3f}  energy={energy_kwh * 1000:.3f} Wh")


def leaderboard() -> None:
    ranking = mlflow_green.rank(EXPERIMENT, metric="val_accuracy")
    print("\nLeaderboard (accuracy per kWh):")
    print(f"  {'rank':>4} {'run':<11} {'val_acc':>7} {'energy Wh':>10} {'acc/kWh':>10}  pareto")
    for row in ranking.rows:
        if row.rank is None:
            print(f"  {'-':>4} {row.run_name:<11} not ranked: {row.reason}")
            continue
        print(f"  {row.rank:>4} {row.run_name:<11} {row.quality:>7.3f} {row.energy_kwh * 1000:>10.3f}"
              f" {row.accuracy_per_kwh:>10.0f}  {'yes' if row.pareto else ''}")


def main() -> None:
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    mlflow.set_experiment(EXPERIMENT)
    digits = load_digits()
    data = train_test_split(digits.data / 16.0, digits.target, test_size=0.25, random_state=0)
    for name, hidden in SIZES.items():
        train(name, hidden, data)
    leaderboard()
    uri = mlflow.get_tracking_uri()
    mlflow_bin = os.path.relpath(Path(sys.executable).with_name("mlflow"))
    print(f"\nOpen the MLflow UI:  {mlflow_bin} ui --backend-store-uri {uri}   (then http://127.0.0.1:5000)")


if __name__ == "__main__":
    main()
