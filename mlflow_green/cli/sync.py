"""``mlflow-green sync``: send what earlier trainings could not send to MLflow, exactly once.

Example:
    $ mlflow-green sync                               # the spools of the current tracking URI
    $ mlflow-green sync --tracking-uri http://mlflow:5000
    $ mlflow-green sync --all --dry-run               # every spool, whatever its server
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import click

from mlflow_green.errors import SpoolFormatError
from mlflow_green.formatting import count, plural
from mlflow_green.record.spool import (
    ENV_SPOOL_DIR,
    MALFORMED_DIR,
    canonical_uri,
    default_spool_dir,
    read_header,
    spool_paths,
)

_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
"""sync retries by itself (``--retries``): MLflow's own retries would make it wait minutes on a dead server."""


@click.command()
@click.option("--tracking-uri", default=None,
              help="Send the spools recorded for this tracking URI (default: the current one, MLFLOW_TRACKING_URI).")
@click.option("--all", "all_uris", is_flag=True, help="Send every spool, each to the tracking URI it recorded.")
@click.option("--spool-dir", type=click.Path(file_okay=False), default=None,
              help=f"Spool folder (default: ${ENV_SPOOL_DIR} or ~/.cache/mlflow-green/spool).")
@click.option("--retries", type=click.IntRange(0, 20), default=3, show_default=True,
              help="Tries after the first for a transient failure (backoff 0.5 s doubling).")
@click.option("--dry-run", is_flag=True, help="Only list what is pending.")
def sync(tracking_uri: str | None, all_uris: bool, spool_dir: str | None, retries: int, dry_run: bool) -> None:
    """Replay spooled runs, metrics, tags, reports and run ends, in order, exactly once.

    Creates the runs that could not be created, ends KILLED the runs whose training process is
    gone, sets aside (in rejected/) what the server refuses and (in malformed/) what cannot be
    read. Exits 0 when nothing is left to send, 1 when something still waits (server unreachable,
    a live writer) or was set aside now, 2 on a bad option.
    """
    import mlflow

    folder = Path(spool_dir) if spool_dir else default_spool_dir()
    uri = None if all_uris else canonical_uri(tracking_uri or mlflow.get_tracking_uri())
    if uri is not None:
        _check_uri(uri)
    paths, others = _select(folder, uri)
    if not paths:
        click.echo(f"Nothing to sync in {folder}" + (f" for {uri}." if uri else "."))
        _mention_others(others)
        return
    try:
        failed = _dry_run(paths) if dry_run else _replay(paths, retries)
    except OSError as exc:
        raise click.ClickException(_disk_message(exc, folder)) from None
    _mention_others(others)
    if failed:
        sys.exit(1)


def _select(folder: Path, uri: str | None) -> tuple[list[Path], Counter[str]]:
    """The spool files to replay (all if ``uri`` is None) and a count of the others by tracking URI."""
    chosen: list[Path] = []
    others: Counter[str] = Counter()
    for path in spool_paths(folder):
        try:
            recorded = canonical_uri(read_header(path).get("tracking_uri") or "") if path.is_file() else None
        except SpoolFormatError:
            recorded = None  # malformed: replay_file moves it aside
        if uri is None or recorded is None or recorded == uri:
            chosen.append(path)
        else:
            others[recorded] += 1
    return chosen, others


def _replay(paths: list[Path], retries: int) -> bool:
    from mlflow import MlflowClient

    from mlflow_green.record.replay import replay_file

    clients: dict[str, MlflowClient] = {}

    def client_for(uri: str) -> MlflowClient:
        if uri not in clients:
            clients[uri] = MlflowClient(uri or None)
        return clients[uri]

    unreachable: dict[str, str] = {}
    totals: Counter[str] = Counter()
    with _http_defaults():
        for path in paths:
            result = replay_file(path, client_for=client_for, retries=retries, unreachable=unreachable)
            totals[result.outcome] += 1
            totals["sent"] += result.sent
            totals["rejected"] += result.rejected
            totals["pending"] += result.pending
            click.echo(_describe(result))
    click.echo(
        f"{plural(len(paths), 'spool file')}: {plural(totals['sent'], 'write')} sent, {count(totals['rejected'])} set "
        f"aside, {count(totals['pending'])} still pending; {plural(totals['malformed'], 'malformed file')} moved aside, "
        f"{count(totals['busy'])} being written by a live process."
    )
    if totals["pending"]:
        click.echo("Run `mlflow-green sync` again when the tracking server is reachable.")
    return bool(totals["pending"] or totals["busy"] or totals["rejected"] or totals["malformed"] or totals["kept"]
                or totals["error"])


def _describe(result: object) -> str:
    from mlflow_green.record.replay import FileResult

    assert isinstance(result, FileResult)
    name = result.path.name
    if result.outcome == "busy":
        return f"{name}: skipped, {result.error}."
    if result.outcome == "malformed":
        where = f"moved to {result.moved_to}" if result.moved_to else "; ".join(result.notes)
        return f"{name}: not a spool file ({result.error}); {where}."
    if result.outcome == "error":
        return f"{name}: could not be replayed ({result.error}); the other files go on."
    if result.outcome == "gone":
        return f"{name}: already sent by its writer."
    parts = [f"{result.label} on {result.tracking_uri}:"]
    if result.created:
        parts.append("created;")
    elif result.found:
        parts.append("found (an earlier try created it; its answer was lost);")
    parts.append(f"{plural(result.sent, 'write')} sent")
    if result.rejected:
        parts.append(f"; {result.rejected} set aside in {result.rejected_file} ({result.reasons[0]})")
    if result.ended:
        parts.append(f"; ended {result.ended}")
    if result.pending:
        parts.append(f"; {result.pending} still pending ({result.error})")
    line = " ".join(parts).replace(" ;", ";") + "."
    for note in result.notes:
        line += f"\n  note: {note}."
    return line


def _dry_run(paths: list[Path]) -> bool:
    from mlflow_green.errors import SpoolBusyError
    from mlflow_green.record.spool import SpoolFile, to_send

    pending_total = 0
    for path in paths:
        try:
            spool = SpoolFile.acquire(path)
        except SpoolBusyError:
            click.echo(f"{path.name}: being written by a live process.")
            continue
        except (SpoolFormatError, FileNotFoundError) as exc:
            click.echo(f"{path.name}: not a spool file ({exc}); sync moves it to {MALFORMED_DIR}/.")
            continue
        try:
            content = spool.read()
            pending = to_send(content.entries, spool.done_seq)
            writer = spool.writer
            state = writer.state() if writer is not None else "unknown"
            click.echo(f"{spool.label()}: {plural(len(pending), 'pending write')} for {spool.tracking_uri} "
                       f"({len(content.malformed)} malformed; writer {writer.describe() if writer else '?'}: {state}).")
            pending_total += len(pending)
        finally:
            spool.release()
    return False


def _check_uri(uri: str) -> None:
    """A clear error for a tracking URI MLflow cannot use (before anything is read or sent)."""
    from mlflow_green.record.replay import store_problem

    problem = store_problem(uri, connect=not uri.startswith(("postgresql", "mysql", "mssql")))
    if problem:
        raise click.BadParameter(problem, param_hint="--tracking-uri")


@contextlib.contextmanager
def _http_defaults() -> Iterator[None]:
    added = [name for name in _HTTP_DEFAULTS if name not in os.environ]
    for name in added:
        os.environ[name] = _HTTP_DEFAULTS[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _mention_others(others: Counter[str]) -> None:
    if others:
        listed = ", ".join(f"{uri} ({count})" for uri, count in sorted(others.items()))
        click.echo(f"Left alone: spool files of other tracking URIs: {listed}. "
                   "Use --tracking-uri URI for one of them, or --all.")


def _disk_message(exc: OSError, folder: Path) -> str:
    if exc.errno == errno.ENOSPC:
        return (f"no space left on the device of {folder} ({exc}). Free some space and run `mlflow-green sync` "
                "again: nothing was lost, and what was sent is not sent twice.")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write in {folder} ({exc}). Run sync where the spool folder is writable."
    return f"cannot use the spool folder {folder}: {exc}"
