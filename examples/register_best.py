"""Register the best model of a zoo — the run with the highest quality per kWh — and print its version.

Used by ``make demo`` before ``mlflow-green gate``; the run's model was logged by the zoo script
(``mlflow.keras.log_model`` / ``mlflow.pytorch.log_model`` as ``model``). A run registered already
keeps its version (running the demo again adds a version only for a better run).

    python examples/register_best.py green-digits-keras digits-keras      # prints the version, e.g. 1
"""

from __future__ import annotations

import os
import sys

import mlflow
from mlflow import MlflowClient

import mlflow_green


def register_best(experiment: str, model_name: str) -> str:
    """The version of ``model_name`` holding the best run of ``experiment`` (registered now if needed)."""
    # Each run's own quality metric (its green.quality_metric tag): what green/accuracy_per_kwh,
    # and so the gate's min_accuracy_per_kwh and beat_current_by_percent rules, are computed from.
    ranking = mlflow_green.rank(experiment)
    if not ranking.ranked:
        raise SystemExit(f"No ranked run in {experiment!r}: run the zoo first (make demo).")
    best = ranking.ranked[0]
    client = MlflowClient()
    for version in client.search_model_versions(f"name = '{model_name}'"):
        if version.run_id == best.run_id:
            return str(version.version)
    version = mlflow.register_model(f"runs:/{best.run_id}/model", model_name)
    return str(version.version)


def main() -> None:
    experiment, model_name = sys.argv[1], sys.argv[2]
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    version = register_best(experiment, model_name)
    print(f"{model_name} version {version}: the best run of {experiment} by quality per kWh", file=sys.stderr)
    print(version)


if __name__ == "__main__":
    main()
