"""Ranking by inference: quality per joule per prediction, pure rules and real sqlite stores.

Runs are logged into a real store as the green evaluator logs them (metrics at step = batch size,
inference tags); registered versions point at their evaluation with ``green.inference_run``.
The SQL fast path, the client-API path, the CLI and the view's JSON API must agree.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from mlflow_green.cli import main as cli
from mlflow_green.errors import RankRequestError
from mlflow_green.ranking import RankedRow, Ranking, RunRecord, rank, rank_client, rank_records
from mlflow_green.record import schema
from mlflow_green.server import view

ACC = "accuracy_score"
J = schema.INFERENCE_ENERGY_PER_PREDICTION_J


def evaluated(name: str, quality: float | None, j: float | None, *, estimated: bool = False, batch: int = 32,
              latency_ms: float = 1.0, run_id: str | None = None) -> RunRecord:
    metrics = {schema.ENERGY_KWH: 0.01}
    if quality is not None:
        metrics[ACC] = quality
    if j is not None:
        metrics.update({J: j, schema.INFERENCE_LATENCY_MS: latency_ms, schema.INFERENCE_THROUGHPUT_PER_S: 1000.0})
    tags = {schema.TAG_QUALITY_METRIC: ACC, schema.TAG_INFERENCE_ESTIMATED: "true" if estimated else "false",
            schema.TAG_INFERENCE_BATCH_SIZE: str(batch)}
    return RunRecord(run_id or f"id-{name}", name, "1", metrics, tags)


# --- pure -------------------------------------------------------------------------------------------


def test_ranks_by_quality_per_joule_per_prediction_with_ties_and_the_frontier() -> None:
    rows = rank_records([
        evaluated("fp32", 0.98, 0.004),   # 245 per J
        evaluated("int8", 0.97, 0.001),   # 970
        evaluated("pruned", 0.485, 0.0005),  # 970: ties with int8, less accurate so listed second
        evaluated("slow", 0.90, 0.01),    # 90, dominated by fp32
    ], by="inference")
    assert [(r.rank, r.run_name) for r in rows] == [(1, "int8"), (1, "pruned"), (3, "fp32"), (4, "slow")]
    assert rows[0].accuracy_per_j == pytest.approx(970.0)
    assert rows[0].accuracy_per_kwh is None and rows[0].energy_kwh == 0.01  # training energy still shown
    assert {r.run_name: r.pareto for r in rows} == {"int8": True, "pruned": True, "fp32": True, "slow": False}
    assert rows[0].latency_ms == 1.0 and rows[0].inference_batch_size == 32 and rows[0].inference_run_id == "id-int8"


def test_rows_that_cannot_be_ranked_by_inference_say_why() -> None:
    rows = rank_records([
        evaluated("ok", 0.9, 0.001),
        evaluated("never", 0.9, None),
        evaluated("zero", 0.9, 0.0),
        evaluated("nan", 0.9, float("nan")),
        evaluated("noq", None, 0.001),
    ], by="inference")
    reasons = {r.run_name: r.reason for r in rows if not r.ranked}
    assert reasons["never"].startswith("not evaluated: no green/inference_energy_per_prediction_j")
    assert "not a positive number" in reasons["zero"]
    assert "NaN" in reasons["nan"]
    assert reasons["noq"] == "no quality metric 'accuracy_score'"
    assert [r.run_name for r in rows if r.ranked] == ["ok"]


def test_measured_only_reads_the_inference_provenance() -> None:
    rows = rank_records([evaluated("est", 0.9, 0.001, estimated=True), evaluated("meas", 0.8, 0.002)],
                        by="inference", measured_only=True)
    assert [r.run_name for r in rows] == ["meas"]


def test_the_evaluation_run_supplies_figures_and_missing_quality() -> None:
    evaluation = evaluated("eval", 0.96, 0.002, run_id="e1")
    training = RunRecord("t1", "training", "1", {"val_accuracy": 0.95, schema.ENERGY_KWH: 0.02},
                         {schema.TAG_QUALITY_METRIC: "val_accuracy"}, evaluation=evaluation)
    (by_training_metric,) = rank_records([training], by="inference")
    assert by_training_metric.quality == 0.95 and by_training_metric.energy_per_prediction_j == 0.002
    assert by_training_metric.inference_run_id == "e1" and by_training_metric.run_id == "t1"
    (by_eval_metric,) = rank_records([training], by="inference", metric=ACC)
    assert by_eval_metric.quality == 0.96


def test_ranking_round_trips_through_json_and_warns_about_mixed_batch_sizes() -> None:
    ranking = Ranking(rows=rank_records([evaluated("a", 0.9, 0.001, batch=1), evaluated("b", 0.9, 0.002)],
                                        by="inference"), by="inference")
    again = Ranking.from_dict(json.loads(ranking.to_json()))
    assert again == ranking and again.batch_sizes == (1, 32)
    assert ranking.pareto[0].run_name == "a"  # cheapest J/prediction first


def test_unknown_by_is_a_clear_error() -> None:
    with pytest.raises(RankRequestError, match="by must be one of training, inference"):
        rank_records([], by="carbon")
    with pytest.raises(RankRequestError, match="by must be one of"):
        rank("whatever", by="latency")


# --- real stores --------------------------------------------------------------------------------------


def log_run(client: MlflowClient, experiment_id: str, name: str, metrics: dict[str, float],
            tags: dict[str, str], steps: dict[str, list[tuple[int, float]]] | None = None) -> str:
    run_id = client.create_run(experiment_id, run_name=name).info.run_id
    now = int(time.time() * 1000)
    entries = [Metric(k, v, now, 0) for k, v in metrics.items()]
    for key, points in (steps or {}).items():
        entries += [Metric(key, value, now + i, step) for i, (step, value) in enumerate(points)]
    client.log_batch(run_id, metrics=entries, tags=[RunTag(k, v) for k, v in tags.items()])
    client.set_terminated(run_id)
    return run_id


def evaluation_tags(batch: int = 32, estimated: bool = False, of: str | None = None) -> dict[str, str]:
    tags = {schema.TAG_INFERENCE_ESTIMATED: str(estimated).lower(), schema.TAG_INFERENCE_BATCH_SIZE: str(batch),
            schema.TAG_INFERENCE_METERS: "cpu:rapl", schema.TAG_QUALITY_METRIC: ACC}
    if of:
        tags[schema.TAG_INFERENCE_MODEL_RUN] = of
    return tags


@pytest.fixture(scope="module")
def zoo(tracking_uri: str) -> dict[str, Any]:
    """Training runs; two evaluated in their own run (joined through the version tag), one evaluated
    in-run, one never evaluated, one whose evaluation run was deleted; a stray evaluation elsewhere."""
    client = MlflowClient(tracking_uri)
    suffix = uuid.uuid4().hex[:8]
    exp = client.create_experiment(f"rank-inference-{suffix}")
    other = client.create_experiment(f"rank-inference-evals-{suffix}")
    model = f"rank-inference-model-{suffix}"
    client.create_registered_model(model)
    ids: dict[str, str] = {}
    for name, acc in (("float", 0.98), ("int8", 0.97), ("untested", 0.99), ("lost", 0.9), ("mislinked", 0.9),
                      ("garbled", 0.9)):
        ids[name] = log_run(client, exp, name, {"test_accuracy": acc, schema.ENERGY_KWH: 0.01},
                            {schema.TAG_QUALITY_METRIC: "test_accuracy", schema.TAG_ESTIMATED: "false"})
    ids["inrun"] = log_run(client, exp, "inrun", {"test_accuracy": 0.95, schema.ENERGY_KWH: 0.005},
                           {schema.TAG_QUALITY_METRIC: "test_accuracy", **evaluation_tags()},
                           steps={J: [(1, 0.01), (32, 0.0008)], schema.INFERENCE_LATENCY_MS: [(1, 0.2), (32, 1.5)]})
    # evaluations: of float in the same experiment (deduplicated), of int8 in another experiment
    ids["eval-float"] = log_run(client, exp, "eval-float", {ACC: 0.981}, evaluation_tags(of=ids["float"]),
                                steps={J: [(1, 0.02), (32, 0.004)], schema.INFERENCE_LATENCY_MS: [(32, 3.0)]})
    ids["eval-int8"] = log_run(client, other, "eval-int8", {ACC: 0.972}, evaluation_tags(of=ids["int8"]),
                               steps={J: [(1, 0.01), (32, 0.001)], schema.INFERENCE_LATENCY_MS: [(32, 2.0)]})
    versions = {}
    for name in ("float", "int8", "untested", "lost", "mislinked", "garbled"):
        versions[name] = str(client.create_model_version(model, f"runs:/{ids[name]}/model", ids[name]).version)
    client.set_model_version_tag(model, versions["float"], schema.TAG_INFERENCE_RUN, ids["eval-float"])
    client.set_model_version_tag(model, versions["int8"], schema.TAG_INFERENCE_RUN, ids["eval-int8"])
    client.set_model_version_tag(model, versions["lost"], schema.TAG_INFERENCE_RUN, "0" * 32)
    # someone points a version at another model's (cheap) evaluation, or writes garbage into the tag
    client.set_model_version_tag(model, versions["mislinked"], schema.TAG_INFERENCE_RUN, ids["eval-int8"])
    client.set_model_version_tag(model, versions["garbled"], schema.TAG_INFERENCE_RUN, "../runs/\x1b[31m' OR 1=1")
    return {"uri": tracking_uri, "exp": exp, "model": model, "ids": ids, "versions": versions, "client": client}


def rows_of(ranking: Ranking) -> list[tuple[int | None, str, float | None]]:
    return [(r.rank, r.run_name, r.energy_per_prediction_j) for r in ranking.rows]


def test_experiment_by_inference_joins_evaluations_and_lists_each_model_once(zoo: dict[str, Any]) -> None:
    ranking = rank(zoo["exp"], metric="test_accuracy", tracking_uri=zoo["uri"], by="inference")
    assert ranking.by == "inference"
    ranked = [(r.rank, r.run_name, r.energy_per_prediction_j) for r in ranking.ranked]
    assert ranked == [(1, "inrun", 0.0008), (2, "int8", 0.001), (3, "float", 0.004)]
    names = [r.run_name for r in ranking.rows]
    assert "eval-float" not in names  # joined to its training run, not listed twice
    reasons = {r.run_name: r.reason for r in ranking.unranked}
    assert reasons["untested"].startswith("not evaluated")
    assert reasons["lost"].startswith(f"evaluation run {'0' * 32}")
    assert reasons["mislinked"] == (f"evaluation run {zoo['ids']['eval-int8']} (green.inference_run) measured the model "
                                    f"of run {zoo['ids']['int8']}, not this version's (run {zoo['ids']['mislinked']})")
    assert reasons["garbled"].startswith("green.inference_run is not a run id: ")
    int8 = ranking.ranked[1]
    assert int8.inference_run_id == zoo["ids"]["eval-int8"] and int8.latency_ms == 2.0
    assert int8.model_name == zoo["model"]


def test_sql_fast_path_and_client_api_agree(zoo: dict[str, Any]) -> None:
    fast = rank(zoo["exp"], metric="test_accuracy", tracking_uri=zoo["uri"], by="inference")
    slow = rank_client(zoo["client"], zoo["exp"], metric="test_accuracy", by="inference")
    assert rows_of(fast) == rows_of(slow)
    assert [r.pareto for r in fast.rows] == [r.pareto for r in slow.rows]


def test_registered_model_versions_by_inference(zoo: dict[str, Any]) -> None:
    ranking = rank(model=zoo["model"], tracking_uri=zoo["uri"], by="inference", metric=ACC)
    by_version = {r.model_version: r for r in ranking.rows}
    assert by_version[zoo["versions"]["int8"]].rank == 1
    assert by_version[zoo["versions"]["int8"]].quality == 0.972  # the evaluation's accuracy_score
    assert by_version[zoo["versions"]["float"]].rank == 2
    assert by_version[zoo["versions"]["untested"]].reason.startswith("not evaluated")
    training = rank(model=zoo["model"], tracking_uri=zoo["uri"])  # training ranking unchanged
    assert training.by == "training" and all(r.energy_per_prediction_j is None for r in training.rows)


def test_cli_by_inference_table_csv_and_bad_value(zoo: dict[str, Any]) -> None:
    runner = CliRunner()
    args = ["rank", "-e", zoo["exp"], "--metric", "test_accuracy", "--tracking-uri", zoo["uri"], "--by", "inference"]
    table = runner.invoke(cli, args)
    assert table.exit_code == 0, table.output
    assert "ranked by quality per joule per prediction" in table.output
    assert "J/prediction" in table.output and "1 mJ" in table.output and "latency p50" in table.output
    csv_out = runner.invoke(cli, [*args, "--format", "csv"])
    header, first = csv_out.output.splitlines()[:2]
    assert "energy_per_prediction_j" in header and "latency_ms" in header
    assert ",inrun," in first and ",0.0008," in first
    bad = runner.invoke(cli, [*args[:-1], "carbon"])
    assert bad.exit_code == 2 and "carbon" in bad.output


def test_cli_warns_when_batch_sizes_differ(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    exp = client.create_experiment(f"mixed-batches-{uuid.uuid4().hex[:8]}")
    for name, batch in (("a", 1), ("b", 64)):
        log_run(client, exp, name, {ACC: 0.9}, evaluation_tags(batch=batch), steps={J: [(batch, 0.001)]})
    out = CliRunner().invoke(cli, ["rank", "-e", exp, "--tracking-uri", tracking_uri, "--by", "inference"])
    assert "WARNING: measured at different batch sizes (1, 64), not comparable" in out.output


def test_view_api_by_inference(zoo: dict[str, Any]) -> None:
    client = zoo["client"]
    stores = (client._tracking_client.store, client._get_registry_client().store)
    app = Flask("inference-view-test")
    view.register(app, stores=lambda: stores, prefix="")
    http = app.test_client()
    body = http.get(f"/green/api/rank?experiment_ids={zoo['exp']}&metric=test_accuracy&by=inference").get_json()
    assert body["by"] == "inference" and body["batch_sizes"] == [32]
    assert [r["run_name"] for r in body["rows"][:3]] == ["inrun", "int8", "float"]
    assert body["rows"][1]["energy_per_prediction_j"] == 0.001 and body["rows"][1]["latency_ms"] == 2.0
    model = http.get(f"/green/api/models/{zoo['model']}/rank?by=inference&metric=accuracy_score").get_json()
    assert model["by"] == "inference" and model["counts"]["ranked"] == 2
    bad = http.get(f"/green/api/rank?experiment_ids={zoo['exp']}&by=carbon")
    assert bad.status_code == 400 and "by must be one of training, inference" in bad.get_json()["error"]
    training = http.get(f"/green/api/rank?experiment_ids={zoo['exp']}").get_json()
    assert training["by"] == "training"


def test_ranked_row_from_dict_keeps_inference_fields() -> None:
    row = RankedRow(1, "r", "n", "1", energy_per_prediction_j=0.5, latency_ms=2.0, inference_batch_size=8)
    assert RankedRow.from_dict(row.to_dict()) == row
