"""`mlflow-green rank`: every output format on hand-made runs in a real sqlite store, and the errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from mlflow_green.cli import main
from mlflow_green.cli.rank import CSV_COLUMNS
from mlflow_green.ranking import rank
from mlflow_green.record import schema

ACC = "val_accuracy"
ODD = "a|b <i>x</i> *y*"


@pytest.fixture()
def experiment(tracking_uri: str) -> str:
    """An experiment named uniquely with five runs: a tie, an estimate, zero energy, an odd name."""
    client = MlflowClient(tracking_uri)
    name = f"cli-rank-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    for run_name, accuracy, energy, estimated in (
        ("mobile", 0.90, 0.001, False),
        ("twin", 0.45, 0.0005, False),
        ("cnn", 0.98, 0.004, True),
        ("zero", 0.9, 0.0, False),
        (ODD, 0.5, 0.0025, False),
    ):
        run = client.create_run(experiment_id, run_name=run_name)
        client.log_metric(run.info.run_id, ACC, accuracy)
        client.log_metric(run.info.run_id, "test_accuracy", accuracy - 0.01)
        client.log_metric(run.info.run_id, schema.ENERGY_KWH, energy)
        client.log_metric(run.info.run_id, schema.EMISSIONS_KG, energy * 0.4)
        client.set_tag(run.info.run_id, schema.TAG_QUALITY_METRIC, ACC)
        client.set_tag(run.info.run_id, schema.TAG_ESTIMATED, str(estimated).lower())
        client.set_tag(run.info.run_id, schema.TAG_COMPRESSION, "int8" if run_name == "cnn" else "none")
    return name


def invoke(tracking_uri: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["rank", *args, "--tracking-uri", tracking_uri])
    return result.exit_code, result.stdout, result.stderr


def test_table_lists_ranked_runs_then_the_unranked_with_their_reason(experiment: str, tracking_uri: str) -> None:
    code, out, _ = invoke(tracking_uri, "-e", experiment)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"Runs of {experiment}, ranked by quality per kWh")
    header = lines[2].split()
    assert header[:3] == ["rank", "run", ACC]
    body = lines[4:]
    assert [line.split()[:2] for line in body] == [
        ["1", "mobile"], ["1", "twin"], ["3", "cnn"], ["4", "a|b"], ["-", "zero"],
    ]
    assert "900" in body[0] and "*" in body[0]              # 0.9 / 0.001 kWh, on the frontier
    assert "1 Wh" in body[0] and "400 mg CO2e" in body[0]   # energy and emissions as mlflow_green.formatting writes them
    assert "estimated" in body[2] and "measured" in body[0]
    assert body[4].rstrip().endswith("energy is 0")


def test_csv_has_raw_values_in_schema_units(experiment: str, tracking_uri: str) -> None:
    code, out, _ = invoke(tracking_uri, "-e", experiment, "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["rank"], r["run_name"]) for r in rows] == [
        ("1", "mobile"), ("1", "twin"), ("3", "cnn"), ("4", ODD), ("", "zero"),
    ]
    first = rows[0]
    assert float(first["energy_kwh"]) == 0.001 and float(first["accuracy_per_kwh"]) == pytest.approx(900)
    assert first["pareto"] == "true" and first["estimated"] == "false" and first["experiment_name"] == experiment
    assert rows[2]["compression"] == "int8" and rows[4]["reason"] == "energy is 0" and rows[4]["accuracy_per_kwh"] == ""


def test_json_is_the_api_form(experiment: str, tracking_uri: str) -> None:
    code, out, _ = invoke(tracking_uri, "-e", experiment, "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data == json.loads(rank(experiment, tracking_uri=tracking_uri).to_json())
    assert data["counts"] == {"rows": 5, "ranked": 4, "unranked": 1, "pareto": 3}
    assert data["rows"][0]["run_name"] == "mobile"


def test_markdown_is_a_table_with_escaped_cells(experiment: str, tracking_uri: str) -> None:
    code, out, _ = invoke(tracking_uri, "-e", experiment, "--format", "markdown")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("**Runs of ") and lines[2].startswith("| rank | run |")
    assert lines[3].startswith("|---:|---|")
    odd = next(line for line in lines if "a\\|b" in line)
    assert "&lt;i&gt;x&lt;/i&gt; \\*y\\*" in odd       # no pipe, HTML or emphasis leaks from a run name
    assert odd.count(" | ") == lines[2].count(" | ")


def test_top_measured_only_metric_and_filter(experiment: str, tracking_uri: str) -> None:
    _, out, _ = invoke(tracking_uri, "-e", experiment, "--top", "2", "--format", "csv")
    assert [r["run_name"] for r in csv.DictReader(io.StringIO(out))] == ["mobile", "twin"]
    _, out, _ = invoke(tracking_uri, "-e", experiment, "--measured-only", "--format", "json")
    assert "cnn" not in {r["run_name"] for r in json.loads(out)["rows"]}
    _, out, _ = invoke(tracking_uri, "-e", experiment, "--metric", "test_accuracy", "--format", "json")
    data = json.loads(out)
    assert data["metric"] == "test_accuracy" and data["rows"][0]["quality"] == pytest.approx(0.89)
    _, out, _ = invoke(tracking_uri, "-e", experiment, "--filter", "attributes.run_name = 'cnn'", "--format", "csv")
    assert [r["run_name"] for r in csv.DictReader(io.StringIO(out))] == ["cnn"]


def test_registered_model(experiment: str, tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = {r.info.run_name: r.info.run_id for r in client.search_runs([experiment_id])}
    name = f"cli-model-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    for run_name in ("cnn", "mobile"):
        client.create_model_version(name, source=f"runs:/{runs[run_name]}/model", run_id=runs[run_name])
    client.set_registered_model_alias(name, "champion", "1")
    code, out, _ = invoke(tracking_uri, "-m", name)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"Versions of registered model {name}")
    assert lines[2].split()[:4] == ["rank", "version", "aliases", "run"]
    assert [line.split()[:3] for line in lines[4:]] == [["1", "2", "mobile"], ["2", "1", "@champion"]]
    assert lines[4].rstrip().endswith("—")  # no gate result yet


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Give experiments (-e NAME_OR_ID, repeatable) or a registered model (-m NAME)"),
        (("-e", "1", "-m", "x"), "not both"),
        (("-e", "1", "--top", "0"), "Invalid value for '--top'"),
        (("-e", "1", "--format", "html"), "Invalid value for '--format'"),
        (("-e", "1", "--filter", "metrics.a >"), "Invalid filter"),
        (("-m", "no-such-model-" + uuid.uuid4().hex), "No registered model named"),
    ],
)
def test_usage_errors_exit_2_with_the_message(args: tuple[str, ...], message: str, tracking_uri: str) -> None:
    code, out, err = invoke(tracking_uri, *args)
    assert code == 2
    assert message in out + err


def test_unknown_experiment_suggests_close_names(experiment: str, tracking_uri: str) -> None:
    code, out, err = invoke(tracking_uri, "-e", experiment[:-1])
    assert code == 2
    assert f"No experiment named {experiment[:-1]!r}. Did you mean: {experiment!r}" in err


def test_terminal_escape_sequences_in_names_are_shown_not_run(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    name = f"cli-esc-{uuid.uuid4().hex[:8]}"
    run = client.create_run(client.create_experiment(name), run_name="evil\x1b[2Jname")
    client.log_metric(run.info.run_id, ACC, 0.9)
    client.log_metric(run.info.run_id, schema.ENERGY_KWH, 0.01)
    code, out, _ = invoke(tracking_uri, "-e", name, "--metric", ACC)
    assert code == 0 and "\x1b" not in out and "evil\\x1b[2Jname" in out


def test_installed_console_script(experiment: str, tracking_uri: str) -> None:
    exe = Path(sys.executable).with_name("mlflow-green")
    out = subprocess.run([str(exe), "rank", "-e", experiment, "--format", "json", "--tracking-uri", tracking_uri],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"][0]["run_name"] == "mobile"


# --- typical mistakes: exit 2 and what to type instead ----------------------------------------------


def test_a_metric_no_run_has_lists_the_metrics_they_have(experiment: str, tracking_uri: str) -> None:
    code, out, err = invoke(tracking_uri, "-e", experiment, "--metric", "test_acc")
    assert code == 2 and out == ""
    assert "No run here has the quality metric 'test_acc' (--metric) logged. Did you mean 'test_accuracy'?" in err
    assert f"Metrics these runs have: test_accuracy, {ACC}." in err
    code, _, err = invoke(tracking_uri, "-e", experiment, "--metric", "zzz", "--format", "json")
    assert code == 2 and "Did you mean" not in err and "Metrics these runs have" in err


def test_a_metric_some_runs_lack_still_ranks_the_others(experiment: str, tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    mobile = next(r for r in client.search_runs([experiment_id]) if r.info.run_name == "mobile")
    client.log_metric(mobile.info.run_id, "f1", 0.8)
    code, out, _ = invoke(tracking_uri, "-e", experiment, "--metric", "f1")
    assert code == 0 and "no quality metric 'f1'" in out


def test_measured_only_with_only_estimates_says_so(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    name = f"cli-estimates-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    for i in range(5):
        run = client.create_run(experiment_id, run_name=f"vm-{i}")
        client.log_metric(run.info.run_id, ACC, 0.9)
        client.log_metric(run.info.run_id, schema.ENERGY_KWH, 0.001 * (i + 1))
        client.set_tag(run.info.run_id, schema.TAG_QUALITY_METRIC, ACC)
        client.set_tag(run.info.run_id, schema.TAG_ESTIMATED, "true")
    code, out, err = invoke(tracking_uri, "-e", name, "--measured-only")
    assert code == 2 and "No runs." not in out
    assert "All 5 runs here have estimated energy (green.estimated=true)" in err and "mlflow-green doctor" in err
    empty = client.create_experiment(f"{name}-empty")
    code, out, _ = invoke(tracking_uri, "-e", empty, "--measured-only")
    assert code == 0 and "No runs." in out  # nothing logged at all: an empty leaderboard, not a mistake


def test_an_unknown_model_names_the_models_not_a_command_that_does_not_exist(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    client.create_registered_model(f"zoo-{uuid.uuid4().hex[:8]}")
    code, _, err = invoke(tracking_uri, "-m", "qqqqqqqqqqqqqqqqqqqq")
    assert code == 2 and "mlflow models search" not in err and " exist: " in err
