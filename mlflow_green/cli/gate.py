"""``mlflow-green gate``: check a registered model version against an energy policy, for CI.

Exit status: 0 when the version passes (and, with ``--promote``, the alias or stage was set),
1 when it fails (a readable report says which rules and why), 2 on a usage or configuration
error (malformed policy, unknown model or version, an alias the policy does not cover).

Example:
    $ mlflow-green gate -m digits -v 3 --policy green-policy.toml --alias champion --promote
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from mlflow_green.cli.failure import fail
from mlflow_green.errors import GreenError
from mlflow_green.gates.policy import ENV_GATE_POLICY
from mlflow_green.text import visible

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_ERROR = 2


def _error(message: str, kind: str, as_json: bool) -> NoReturn:
    fail(message, kind, as_json=as_json, exit_code=EXIT_ERROR)


@click.command()
@click.option("-m", "--model", required=True, help="Registered model name.")
@click.option("-v", "--version", "version", required=True, help="Model version to check.")
@click.option(
    "--policy",
    "policy_path",
    required=True,
    envvar=ENV_GATE_POLICY,
    show_envvar=True,
    metavar="FILE",
    help="Gate policy (TOML).",
)
@click.option("--alias", default=None, help="Check with the rules of this alias ([aliases.NAME]).")
@click.option("--stage", default=None, help="Check with the rules of this stage ([stages.NAME]) instead of an alias.")
@click.option("--promote", is_flag=True, help="On a pass, set the alias (or transition to the stage).")
@click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    default=None,
    help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else MLflow's default).",
)
@click.option("--no-tags", is_flag=True, help="Do not write the green.gate tags on the version.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def gate(
    model: str,
    version: str,
    policy_path: str,
    alias: str | None,
    stage: str | None,
    promote: bool,
    tracking_uri: str | None,
    no_tags: bool,
    output_format: str,
) -> None:
    """Check a model version against an energy policy; exit 1 if it fails (for CI).

    The rules are the policy's [aliases.ALIAS] (or [stages.STAGE]) table over [default]; without
    --alias or --stage, [default] alone. The outcome is written to the version's tags green.gate,
    green.gate.reasons and green.gate.policy.

    Exits 0 on a pass, 1 on a failure, 2 on a usage or configuration error.
    """
    as_json = output_format == "json"
    if alias is not None and stage is not None:
        _error("give --alias or --stage, not both", "UsageError", as_json)
    if promote and alias is None and stage is None:
        _error("--promote needs --alias or --stage (what to promote the version to)", "UsageError", as_json)

    from mlflow.exceptions import MlflowException

    from mlflow_green.gates.check import check
    from mlflow_green.gates.policy import load_policy

    try:
        policy = load_policy(policy_path)
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri)
        result = check(model, version, policy, alias=alias, stage=stage, client=client, write_tags=not no_tags)
    except GreenError as exc:
        _error(str(exc), type(exc).__name__, as_json)
    except MlflowException as exc:  # unknown model or version, unreachable server
        _error(exc.message, type(exc).__name__, as_json)

    output: dict[str, Any] = result.to_dict()
    promoted = None
    promote_error = None
    if result.passed and promote:
        try:
            if alias is not None:
                client.set_registered_model_alias(model, alias, result.version)
                promoted = f"alias {alias!r} now points to version {result.version} of {model!r}"
            else:
                import warnings

                with warnings.catch_warnings():  # stages are deprecated in MLflow, still supported
                    warnings.simplefilter("ignore", FutureWarning)
                    client.transition_model_version_stage(model, result.version, str(result.stage))
                promoted = f"version {result.version} of {model!r} moved to stage {result.stage}"
        except MlflowException as exc:  # e.g. the server's own gate refused it
            promote_error = exc.message
        else:
            if not no_tags:  # remember the holder for beat_current_by_percent (a green server writes its own)
                from mlflow_green.gates.check import remember_holder
                from mlflow_green.gates.registry import ClientRegistry

                remember_holder(ClientRegistry(client), result)
    output["promoted"] = promoted
    if promote_error is not None:
        output["promote_error"] = promote_error

    if as_json:
        click.echo(json.dumps(output, indent=2))
    else:
        click.echo("\n".join(visible(line) for line in result.report().splitlines()))
        if promoted:
            click.echo(f"Promoted: {visible(promoted)}")
        elif promote and not result.passed:
            click.echo("Not promoted: the gate failed.")
        if promote_error is not None:
            click.echo(f"Not promoted: the gate passed here, but the registry refused: {visible(promote_error)}", err=True)
    if not result.passed or promote_error is not None:
        sys.exit(EXIT_FAILED)
