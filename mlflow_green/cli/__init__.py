"""The ``mlflow-green`` command line: one small module per command.

Example:
    $ mlflow-green doctor
    $ mlflow-green doctor --json
    $ mlflow-green regions
    $ mlflow-green gate -m digits -v 3 --policy green-policy.toml --alias champion
    $ mlflow-green rank -e my-experiment
    $ mlflow-green keys generate ./green-keys
    $ mlflow-green verify -r RUN_ID
"""

from __future__ import annotations

import click

from mlflow_green._version import __version__
from mlflow_green.cli.doctor import doctor
from mlflow_green.cli.gate import gate
from mlflow_green.cli.keys import keys
from mlflow_green.cli.rank import rank_command
from mlflow_green.cli.regions import regions
from mlflow_green.cli.sync import sync
from mlflow_green.cli.verify import verify


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlflow-green")
def main() -> None:
    """Energy and carbon accounting for deep learning in MLflow."""


main.add_command(doctor)
main.add_command(gate)
main.add_command(keys)
main.add_command(regions)
main.add_command(rank_command)
main.add_command(sync)
main.add_command(verify)
