"""``mlflow-green sync``: replay the writes an earlier process could not send to MLflow."""

from __future__ import annotations

import sys

import click

from mlflow_green.record.spool import ENV_SPOOL_DIR, default_spool_dir, spools


@click.command()
@click.option("--spool-dir", type=click.Path(file_okay=False), default=None,
              help=f"Spool folder (default: ${ENV_SPOOL_DIR} or ~/.cache/mlflow-green/spool).")
@click.option("--tracking-uri", default=None,
              help="Send to this tracking server instead of the one each spool recorded.")
@click.option("--dry-run", is_flag=True, help="Only list what is pending.")
def sync(spool_dir: str | None, tracking_uri: str | None, dry_run: bool) -> None:
    """Replay spooled metrics, tags and reports, in order, exactly once.

    Exits 0 when everything was sent (or nothing was pending), 1 when some writes are still
    pending (the server is unreachable: run it again later).
    """
    from mlflow import MlflowClient

    from mlflow_green.record.recorder import replay

    folder = spool_dir or str(default_spool_dir())
    found = list(spools(folder))
    if not found:
        click.echo(f"Nothing to sync in {folder}.")
        return
    left_total = 0
    for spool in found:
        pending = spool.pending()
        target = tracking_uri or spool.tracking_uri
        if dry_run or not pending:
            click.echo(f"run {spool.run_id}: {len(pending)} pending write(s) for {target}")
            if not pending and not dry_run:
                spool.remove()
            left_total += len(pending) if dry_run else 0
            continue
        sent, left = replay(spool, MlflowClient(target or None))
        left_total += left
        state = "done" if not left else f"{left} still pending (server unreachable?)"
        click.echo(f"run {spool.run_id}: sent {sent} write(s) to {target}; {state}")
    if left_total and not dry_run:
        sys.exit(1)
