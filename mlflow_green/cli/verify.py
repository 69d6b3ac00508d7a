"""``mlflow-green verify -r RUN_ID``: check a run's signed measurements from the terminal.

Exit status: 0 when the run is signed by a trusted key and no signed value changed since, 1 when
it is not (unsigned, unknown key, changed values: the output names them), 2 on a usage or
configuration error (no trusted key, unreadable key, unknown run, unreachable server).

Example:
    $ MLFLOW_GREEN_TRUSTED_KEYS=green-signing.pub mlflow-green verify -r 0a1b2c...
    signed: run 0a1b2c... signed by key 3f2a9c1b04de55aa; no signed value changed since
"""

from __future__ import annotations

import json
import os
import sys

import click

from mlflow_green.cli.failure import fail
from mlflow_green.errors import GreenError
from mlflow_green.record.signing import ENV_TRUSTED_KEYS
from mlflow_green.text import visible

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ERROR = 2


@click.command()
@click.option("-r", "--run-id", required=True, help="The run to verify.")
@click.option("--trusted-keys", envvar=ENV_TRUSTED_KEYS, show_envvar=True, metavar="PATHS", default=None,
              help=f"Public keys to trust (paths or folders of *.pub, separated by '{os.pathsep}').")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", default=None,
              help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else MLflow's default).")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def verify(run_id: str, trusted_keys: str | None, tracking_uri: str | None, output_format: str) -> None:
    """Verify a run's green.signature; exit 1 if it is missing, untrusted or anything signed changed."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from mlflow_green.record.run_signature import verify_run
    from mlflow_green.record.signing import TrustedKeys

    as_json = output_format == "json"
    try:
        trusted = TrustedKeys.from_paths(p.strip() for p in (trusted_keys or "").split(os.pathsep) if p.strip())
        if not len(trusted):
            raise GreenError(f"no trusted public key: set {ENV_TRUSTED_KEYS} or give --trusted-keys "
                             "(mlflow-green keys generate DIR writes a key pair)")
        result = verify_run(MlflowClient(tracking_uri), run_id, trusted)
    except (GreenError, MlflowException) as exc:
        message = exc.message if isinstance(exc, MlflowException) else str(exc)
        fail(message, type(exc).__name__, as_json=as_json, exit_code=EXIT_ERROR)
    if as_json:
        click.echo(json.dumps({"run_id": run_id, "ok": result.ok, "status": result.status, "reason": result.reason,
                               "key_id": result.key_id, "changes": list(result.changes)}, indent=2))
    else:
        click.echo(f"{result.status}: run {run_id}: {visible(result.reason) if not result.changes else 'changed after signing:'}")
        for change in result.changes:
            click.echo(f"  {visible(change)}")
    sys.exit(EXIT_OK if result.ok else EXIT_FAILED)
