"""Print a leaderboard of an experiment's runs by accuracy per kWh (a stand-in until `mlflow-green rank`).

Usage::

    python examples/leaderboard.py green-digits-keras [--metric test_accuracy]
"""

from __future__ import annotations

import argparse
import os

import mlflow

from mlflow_green import schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--metric", default=None, help="quality metric (default: each run's green.quality_metric)")
    args = parser.parse_args()
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    runs = mlflow.search_runs(experiment_names=args.experiments, output_format="list")
    rows = []
    for run in runs:
        metrics, tags = run.data.metrics, run.data.tags
        metric = args.metric or tags.get(schema.TAG_QUALITY_METRIC, "val_accuracy")
        energy_kwh, quality = metrics.get(schema.ENERGY_KWH), metrics.get(metric)
        if not energy_kwh or quality is None:
            continue
        rows.append((quality / energy_kwh, tags.get("mlflow.runName", run.info.run_id[:8]), metric, quality, energy_kwh,
                     tags.get(schema.TAG_COMPRESSION, "-"), tags.get(schema.TAG_METERS, "?")))
    print(f"{'run':<11} {'quality':>16} {'energy Wh':>10} {'per kWh':>10}  {'compression':<14} meters")
    for per_kwh, name, metric, quality, energy_kwh, compression, meters in sorted(rows, reverse=True):
        print(f"{name:<11} {metric[:9]:>9}={quality:.3f} {energy_kwh * 1000:>10.3f} {per_kwh:>10.0f}  {compression:<14} {meters}")


if __name__ == "__main__":
    main()
