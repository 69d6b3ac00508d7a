"""Print a leaderboard of experiments' runs by accuracy per kWh, with ``mlflow_green.rank``.

The same leaderboard as ``mlflow-green rank -e green-digits-keras -e green-digits-lightning
--metric test_accuracy``, written with the Python API. Usage::

    python examples/leaderboard.py green-digits-keras green-digits-lightning [--metric test_accuracy]
"""

from __future__ import annotations

import argparse
import os

import mlflow_green


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+", help="experiment names or ids")
    parser.add_argument("--metric", default=None, help="quality metric (default: each run's green.quality_metric)")
    parser.add_argument("--measured-only", action="store_true", help="leave out estimated energy")
    args = parser.parse_args()
    ranking = mlflow_green.rank(
        args.experiments,
        metric=args.metric,
        measured_only=args.measured_only,
        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
    )
    names = dict(ranking.experiments)
    print(f"{'rank':>4}  {'run':<10} {'experiment':<24} {'quality':>8} {'energy Wh':>10} {'per kWh':>9}  "
          f"{'':1} {'compression':<40}")
    for row in ranking.ranked:
        assert row.quality is not None and row.energy_kwh is not None and row.accuracy_per_kwh is not None
        print(f"{row.rank:>4}  {row.run_name:<10} {names[row.experiment_id]:<24} {row.quality:>8.3f} "
              f"{row.energy_kwh * 1000:>10.4f} {row.accuracy_per_kwh:>9,.0f}  {'*' if row.pareto else ' '} "
              f"{row.compression.summary:<40}{'  (estimated)' if row.estimated else ''}")
    for row in ranking.unranked:
        print(f"{'-':>4}  {row.run_name:<10} {names.get(row.experiment_id, ''):<24} not ranked: {row.reason}")
    print("* = on the accuracy-versus-energy Pareto frontier; ties share a rank")


if __name__ == "__main__":
    main()
