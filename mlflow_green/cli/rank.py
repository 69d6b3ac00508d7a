"""``mlflow-green rank``: the accuracy-per-kWh leaderboard in the terminal (or as CSV, JSON, Markdown).

Example:
    $ mlflow-green rank -e green-digits-keras --metric test_accuracy
    $ mlflow-green rank -e 1 -e 2 --top 5 --measured-only --format markdown
    $ mlflow-green rank -m digits-cnn --format json
    $ mlflow-green rank -e green-digits-keras --metric test_accuracy --by inference
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from mlflow_green import formatting as fmt
from mlflow_green.errors import GreenError
from mlflow_green.ranking import BY_VALUES, RankedRow, Ranking, rank
from mlflow_green.record import schema

FORMATS = ("table", "csv", "json", "markdown")

CSV_COLUMNS = (
    "rank", "run_id", "run_name", "experiment_id", "experiment_name", "model_name", "model_version", "model_aliases",
    "quality_metric", "quality", "energy_kwh", "emissions_kg", "accuracy_per_kwh", "pareto", "estimated",
    "compression", "model_params", "model_params_unique", "model_sparsity", "model_weight_bits", "model_size_bytes",
    "gate", "gate_reasons", "reason", "status",
    "energy_per_prediction_j", "accuracy_per_j", "latency_ms", "latency_p95_ms", "throughput_per_s",
    "inference_batch_size", "inference_run_id",
)
"""CSV columns: raw values in the schema's units (kWh, kg, J, ms), one line per leaderboard row."""


@click.command("rank")
@click.option("-e", "--experiment", "experiments", multiple=True, metavar="NAME_OR_ID",
              help="Experiment to rank (name or id; repeat for several).")
@click.option("-m", "--model", default=None, metavar="NAME", help="Rank a registered model's versions instead.")
@click.option("--metric", default=None, metavar="KEY",
              help="Quality metric, higher is better (default: each run's green.quality_metric tag).")
@click.option("--filter", "filter_string", default=None, metavar="FILTER",
              help="MLflow search filter for the runs, e.g. \"params.epochs = '8'\".")
@click.option("--top", type=click.IntRange(min=1), default=None, metavar="N", help="Show the first N rows only.")
@click.option("--measured-only", is_flag=True, help="Leave out runs whose energy is an estimate.")
@click.option("--by", type=click.Choice(BY_VALUES), default="training", show_default=True,
              help="training: quality per kWh; inference: quality per joule per prediction (green evaluator).")
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--tracking-uri", default=None, metavar="URI",
              help="Tracking server or store (default: MLFLOW_TRACKING_URI, else MLflow's default).")
def rank_command(
    experiments: Sequence[str],
    model: str | None,
    metric: str | None,
    filter_string: str | None,
    top: int | None,
    measured_only: bool,
    by: str,
    output_format: str,
    tracking_uri: str | None,
) -> None:
    """Rank runs (or a registered model's versions) by quality per kWh, or per joule per prediction (--by inference).

    Runs without energy, with zero energy or without the quality metric are listed after the
    ranked ones, with the reason. Ties share a rank (1, 1, 3). Exits 0, or 2 when the request
    cannot be answered (unknown experiment or model, invalid filter, a --metric no run has logged,
    --measured-only where every run is estimated), 1 when MLflow fails.
    """
    if not experiments and model is None:
        raise click.UsageError("Give experiments (-e NAME_OR_ID, repeatable) or a registered model (-m NAME).")
    if experiments and model is not None:
        raise click.UsageError("Give either experiments (-e) or a registered model (-m), not both.")
    from mlflow.exceptions import MlflowException

    try:
        ranking = rank(list(experiments) or None, model=model, metric=metric, filter_string=filter_string,
                       measured_only=measured_only, tracking_uri=tracking_uri, by=by)
    except GreenError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except MlflowException as exc:
        click.echo(f"Error: MLflow: {exc.message}", err=True)
        sys.exit(1)
    problem = _unanswered(ranking, metric, tracking_uri, lambda: rank(
        list(experiments) or None, model=model, metric=metric, filter_string=filter_string, measured_only=False,
        tracking_uri=tracking_uri, by=by))
    if problem:
        click.echo(f"Error: {problem}", err=True)
        sys.exit(2)
    if top is not None:
        ranking = ranking.head(top)
    click.echo(render(ranking, output_format), nl=False)


def _unanswered(ranking: Ranking, metric: str | None, tracking_uri: str | None,
                without_measured_only: Callable[[], Ranking]) -> str | None:
    """Why a ranking answers nothing the user asked for (a mistyped --metric, only estimates), or None."""
    if metric and ranking.rows and all(r.quality is None for r in ranking.rows):
        logged = _logged_metrics(ranking, tracking_uri)
        close = difflib.get_close_matches(metric, logged, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        have = f" Metrics these runs have: {', '.join(logged)}." if logged else " These runs have no metric logged."
        return (f"No run here has the quality metric {metric!r} (--metric) logged.{hint}{have} "
                "Leave out --metric to use each run's green.quality_metric tag.")
    if ranking.measured_only and not ranking.rows:
        try:
            everything = without_measured_only()
        except Exception:  # the hint is best effort: the empty ranking stands
            return None
        if everything.rows:
            what = fmt.plural(len(everything.rows), "run") if everything.model_name is None else fmt.plural(
                len(everything.rows), "version")
            return (f"All {what} here have estimated energy (green.estimated=true), so --measured-only leaves out every "
                    "one. Leave it out to rank them as estimates, or train where energy is measured: `mlflow-green "
                    "doctor` says which meters work on a machine.")
    return None


def _logged_metrics(ranking: Ranking, tracking_uri: str | None, limit: int = 200) -> list[str]:
    """The quality-like metric keys (not green/ or system/) the ranked runs have logged."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    keys: set[str] = set()
    for row in ranking.rows[:limit]:
        if not row.run_id:
            continue
        try:
            keys.update(client.get_run(row.run_id).data.metrics)
        except Exception:  # a run the server cannot give us: the hint is best effort
            continue
    return sorted(k for k in keys if not k.startswith((schema.METRIC_PREFIX, "system/")))


def render(ranking: Ranking, output_format: str) -> str:
    """The leaderboard in one of :data:`FORMATS` (ends with a newline)."""
    if output_format == "json":
        return json.dumps(ranking.to_dict(), indent=2, allow_nan=False) + "\n"
    if output_format == "csv":
        return _csv(ranking)
    if output_format == "markdown":
        return _markdown(ranking)
    if output_format == "table":
        return _table(ranking)
    raise ValueError(f"unknown format {output_format!r}; one of {', '.join(FORMATS)}")


# --- columns shared by the table and Markdown --------------------------------------------------------


def _columns(ranking: Ranking) -> list[tuple[str, Callable[[RankedRow], str], bool]]:
    """(header, cell, right-aligned) of the human formats."""
    names = dict(ranking.experiments)
    metrics = {r.quality_metric for r in ranking.rows if r.quality_metric}
    quality_header = next(iter(metrics)) if len(metrics) == 1 else "quality"
    columns: list[tuple[str, Callable[[RankedRow], str], bool]] = [
        ("rank", lambda r: "-" if r.rank is None else str(r.rank), True),
    ]
    if ranking.model_name is not None:
        columns += [
            ("version", lambda r: r.model_version or "", True),
            ("aliases", lambda r: ",".join("@" + a for a in r.model_aliases), False),
        ]
    columns.append(("run", lambda r: r.run_name, False))
    if len(ranking.experiments) > 1:
        columns.append(("experiment", lambda r: names.get(r.experiment_id, r.experiment_id), False))
    if ranking.by == "inference":
        columns += _inference_columns(quality_header, len(metrics) > 1)
    else:
        columns += _training_columns(quality_header, len(metrics) > 1)
    if ranking.model_name is not None:
        columns.append(("gate", lambda r: r.gate or "—", False))
    if any(not r.ranked for r in ranking.rows):
        columns.append(("not ranked because", lambda r: r.reason or "", False))
    return columns


def _inference_columns(quality_header: str, mixed: bool) -> list[tuple[str, Callable[[RankedRow], str], bool]]:
    return [
        (quality_header, lambda r: _quality(r, mixed), True),
        ("J/prediction", lambda r: fmt.energy_j(r.energy_per_prediction_j), True),
        ("per J/prediction", lambda r: fmt.ratio(r.accuracy_per_j), True),
        ("latency p50", lambda r: _ms(r.latency_ms), True),
        ("p95", lambda r: _ms(r.latency_p95_ms), True),
        ("predictions/s", lambda r: fmt.ratio(r.throughput_per_s), True),
        ("batch", lambda r: "" if r.inference_batch_size is None else str(r.inference_batch_size), True),
        ("pareto", lambda r: "*" if r.pareto else "", False),
        ("energy source", lambda r: "" if r.energy_per_prediction_j is None else "estimated" if r.estimated
         else "measured", False),
        ("compression", lambda r: r.compression.summary, False),
    ]


def _ms(value: float | None) -> str:
    return fmt.MISSING if value is None else f"{fmt.significant(value)} ms"


def _training_columns(quality_header: str, mixed: bool) -> list[tuple[str, Callable[[RankedRow], str], bool]]:
    return [
        (quality_header, lambda r: _quality(r, mixed), True),
        ("energy", lambda r: fmt.energy_kwh(r.energy_kwh), True),
        ("emissions", lambda r: fmt.emissions_kg(r.emissions_kg), True),
        ("per kWh", lambda r: fmt.ratio(r.accuracy_per_kwh), True),
        ("pareto", lambda r: "*" if r.pareto else "", False),
        ("energy source", lambda r: "" if r.energy_kwh is None else "estimated" if r.estimated else "measured", False),
        ("compression", lambda r: r.compression.summary, False),
    ]


def _quality(row: RankedRow, mixed: bool) -> str:
    if row.quality is None:
        return fmt.MISSING
    value = fmt.number(row.quality)
    return f"{row.quality_metric}={value}" if mixed else value


def _title(ranking: Ranking) -> str:
    subject = (
        f"Versions of registered model {ranking.model_name}"
        if ranking.model_name is not None
        else "Runs of " + ", ".join(name for _, name in ranking.experiments)
    )
    metric = ranking.metric or "each run's green.quality_metric"
    notes = [f"quality: {metric}", "ties share a rank", "* = Pareto frontier"]
    if ranking.by == "inference" and len(ranking.batch_sizes) > 1:
        sizes = ", ".join(str(b) for b in ranking.batch_sizes)
        notes.append(f"WARNING: measured at different batch sizes ({sizes}), not comparable")
    if ranking.measured_only:
        notes.append("measured energy only")
    if ranking.filter_string:
        notes.append(f"filter: {ranking.filter_string}")
    per = "joule per prediction (inference)" if ranking.by == "inference" else "kWh"
    return f"{subject}, ranked by quality per {per} ({'; '.join(notes)})"


def _table(ranking: Ranking) -> str:
    if not ranking.rows:
        return _printable(_title(ranking)) + "\nNo runs.\n"
    columns = _columns(ranking)
    cells = [[_printable(cell(row)) for _, cell, _ in columns] for row in ranking.rows]
    headers = [header for header, _, _ in columns]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        aligned = zip(values, widths, columns, strict=True)
        parts = [v.rjust(w) if right else v.ljust(w) for v, w, (_, _, right) in aligned]
        return "  ".join(parts).rstrip()

    out = [_printable(_title(ranking)), "", line(headers), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    return "\n".join(out) + "\n"


def _markdown(ranking: Ranking) -> str:
    columns = _columns(ranking)
    out = [f"**{_md(_title(ranking))}**", ""]
    out.append("| " + " | ".join(_md(h) for h, _, _ in columns) + " |")
    out.append("|" + "|".join("---:" if right else "---" for _, _, right in columns) + "|")
    for row in ranking.rows:
        out.append("| " + " | ".join(_md(cell(row)) for _, cell, _ in columns) + " |")
    return "\n".join(out) + "\n"


def _csv(ranking: Ranking) -> str:
    names = dict(ranking.experiments)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in ranking.rows:
        c = row.compression
        writer.writerow({
            "rank": row.rank, "run_id": row.run_id, "run_name": row.run_name, "experiment_id": row.experiment_id,
            "experiment_name": names.get(row.experiment_id, ""), "model_name": row.model_name,
            "model_version": row.model_version, "model_aliases": ",".join(row.model_aliases),
            "quality_metric": row.quality_metric, "quality": _raw(row.quality), "energy_kwh": _raw(row.energy_kwh),
            "emissions_kg": _raw(row.emissions_kg), "accuracy_per_kwh": _raw(row.accuracy_per_kwh),
            "pareto": str(row.pareto).lower(), "estimated": str(row.estimated).lower(), "compression": c.summary,
            "model_params": _raw(c.params), "model_params_unique": _raw(c.params_unique),
            "model_sparsity": _raw(c.sparsity), "model_weight_bits": _raw(c.weight_bits),
            "model_size_bytes": _raw(c.size_bytes), "gate": row.gate, "gate_reasons": row.gate_reasons,
            "reason": row.reason, "status": row.status,
            "energy_per_prediction_j": _raw(row.energy_per_prediction_j), "accuracy_per_j": _raw(row.accuracy_per_j),
            "latency_ms": _raw(row.latency_ms), "latency_p95_ms": _raw(row.latency_p95_ms),
            "throughput_per_s": _raw(row.throughput_per_s), "inference_batch_size": row.inference_batch_size,
            "inference_run_id": row.inference_run_id,
        })
    return buffer.getvalue()


# --- cells ---------------------------------------------------------------------------------------------


def _raw(value: float | None) -> Any:
    return "" if value is None else repr(float(value))


def _printable(text: str) -> str:
    """Control characters (e.g. terminal escape sequences in a run name) shown escaped, not run."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()#+!|~"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;"})


def _md(text: str) -> str:
    """A Markdown table cell: text only (no markup, no HTML), one line."""
    return _printable(" ".join(text.split())).translate(_MD_SPECIAL)
