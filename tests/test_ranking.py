"""Ranking by quality per kWh: the pure rules on hand-made runs, then the same through real stores.

The pure part covers ties (competition ranking), runs that cannot be ranked (each with its
reason, never a division by zero), the Pareto set and ``measured_only``. The store part logs
runs into a real sqlite store (and a file store) and checks that the SQL fast path, the client
API path and the registered-model path all give the same leaderboard.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlflow import MlflowClient

import mlflow_green
from mlflow_green.errors import GreenError, NotFoundError, RankRequestError
from mlflow_green.ranking import (
    Compression,
    RankedRow,
    Ranking,
    RunRecord,
    pareto_flags,
    rank,
    rank_client,
    rank_records,
)
from mlflow_green.record import schema

ACC = "val_accuracy"


def record(name: str, quality: float | None, energy_kwh: float | None, *, estimated: bool = False,
           tag_metric: str | None = ACC, start_ms: int = 0, **extra_metrics: float) -> RunRecord:
    metrics: dict[str, float] = dict(extra_metrics)
    if quality is not None:
        metrics[ACC] = quality
    if energy_kwh is not None:
        metrics[schema.ENERGY_KWH] = energy_kwh
        metrics[schema.EMISSIONS_KG] = energy_kwh * 0.5
    tags = {schema.TAG_ESTIMATED: "true" if estimated else "false"}
    if tag_metric:
        tags[schema.TAG_QUALITY_METRIC] = tag_metric
    return RunRecord(run_id=f"id-{name}", run_name=name, experiment_id="1", metrics=metrics, tags=tags,
                     status="FINISHED", start_time_ms=start_ms)


def summary(rows: tuple[RankedRow, ...] | list[RankedRow]) -> list[tuple[int | None, str]]:
    return [(r.rank, r.run_name) for r in rows]


# --- the pure rules -------------------------------------------------------------------------------


def test_ranks_by_quality_per_kwh_best_first() -> None:
    rows = rank_records([record("big", 0.98, 0.004), record("small", 0.90, 0.001), record("mid", 0.95, 0.002)])
    assert summary(rows) == [(1, "small"), (2, "mid"), (3, "big")]
    assert rows[0].accuracy_per_kwh == pytest.approx(900.0)
    assert rows[0].quality_metric == ACC and rows[0].emissions_kg == pytest.approx(0.0005)


def test_ties_share_a_rank_competition_style_more_accurate_first() -> None:
    rows = rank_records([
        record("a", 0.45, 0.0005),   # 900 per kWh (0.45 / 0.0005 is not exactly 900.0 in floats)
        record("b", 0.90, 0.001),    # 900 per kWh
        record("c", 0.80, 0.001),    # 800
        record("d", 0.40, 0.0005),   # 800
        record("e", 0.70, 0.001),    # 700
    ])
    assert summary(rows) == [(1, "b"), (1, "a"), (3, "c"), (3, "d"), (5, "e")]


def test_exact_duplicates_tie_and_are_ordered_by_name() -> None:
    rows = rank_records([record("z", 0.9, 0.001), record("y", 0.9, 0.001)])
    assert summary(rows) == [(1, "y"), (1, "z")]
    assert all(r.pareto for r in rows)


@pytest.mark.parametrize(
    ("run", "reason"),
    [
        (record("no-energy", 0.9, None), f"no {schema.ENERGY_KWH} logged"),
        (record("zero", 0.9, 0.0), "energy is 0"),
        (record("negative", 0.9, -1.0), "energy is -1 kWh, not a positive number"),
        (record("nan-energy", 0.9, math.nan), f"{schema.ENERGY_KWH} is NaN"),
        (record("no-metric", None, 0.01), f"no quality metric {ACC!r}"),
        (record("nan-quality", math.nan, 0.01), f"quality metric {ACC!r} is nan"),
        (record("untagged", 0.9, 0.01, tag_metric=None),
         "no quality metric: pass metric= or tag the run with green.quality_metric"),
    ],
)
def test_runs_that_cannot_be_ranked_are_listed_with_the_reason(run: RunRecord, reason: str) -> None:
    rows = rank_records([run, record("ok", 0.5, 0.01)])
    assert summary(rows) == [(1, "ok"), (None, run.run_name)]
    unranked = rows[1]
    assert unranked.reason == reason
    assert unranked.accuracy_per_kwh is None and not unranked.pareto
    json.dumps(Ranking(rows=rows).to_dict(), allow_nan=False)  # NaN never reaches JSON


def test_unranked_rows_follow_the_ranked_ones_newest_first() -> None:
    rows = rank_records([
        record("old", None, 0.01, start_ms=1), record("good", 0.9, 0.01), record("new", 0.9, None, start_ms=5),
    ])
    assert summary(rows) == [(1, "good"), (None, "new"), (None, "old")]


def test_metric_argument_overrides_each_runs_tag() -> None:
    runs = [record("a", 0.9, 0.01, test_accuracy=0.5), record("b", 0.8, 0.01, test_accuracy=0.7)]
    assert summary(rank_records(runs)) == [(1, "a"), (2, "b")]
    by_test = rank_records(runs, metric="test_accuracy")
    assert summary(by_test) == [(1, "b"), (2, "a")]
    assert {r.quality_metric for r in by_test} == {"test_accuracy"}
    assert summary(rank_records(runs, metric="metrics.test_accuracy")) == summary(by_test)


def test_each_run_uses_its_own_tagged_metric() -> None:
    runs = [record("a", 0.9, 0.01), record("b", None, 0.01, tag_metric="f1", f1=0.95)]
    rows = rank_records(runs)
    assert [(r.run_name, r.quality_metric, r.quality) for r in rows] == [("b", "f1", 0.95), ("a", ACC, 0.9)]


def test_pareto_set_no_other_run_is_both_more_accurate_and_cheaper() -> None:
    rows = rank_records([
        record("cheap", 0.80, 0.001),      # frontier: cheapest
        record("balanced", 0.90, 0.002),   # frontier
        record("dominated", 0.85, 0.003),  # balanced is better and cheaper
        record("best", 0.95, 0.010),       # frontier: most accurate
        record("same-cost", 0.94, 0.010),  # same energy as best, less accurate
        record("worse", 0.70, 0.001),      # same energy as cheap, less accurate
        record("twin", 0.90, 0.002),       # equal to balanced: neither dominates
    ])
    front = {r.run_name for r in rows if r.pareto}
    assert front == {"cheap", "balanced", "twin", "best"}
    assert [r.run_name for r in Ranking(rows=rows).pareto] == ["cheap", "balanced", "twin", "best"]


def test_unranked_runs_are_never_on_the_frontier() -> None:
    rows = rank_records([record("a", 0.9, 0.0), record("b", 0.5, 0.01)])
    assert [(r.run_name, r.pareto) for r in rows] == [("b", True), ("a", False)]


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(1, 6)), max_size=12))
def test_pareto_flags_match_the_definition(points: list[tuple[int, int]]) -> None:
    flags = pareto_flags([(float(q), float(e)) for q, e in points])
    for i, (q, e) in enumerate(points):
        dominated = any(q2 >= q and e2 <= e and (q2 > q or e2 < e) for j, (q2, e2) in enumerate(points) if j != i)
        assert flags[i] == (not dominated)


def test_measured_only_drops_estimates_before_ranking() -> None:
    runs = [record("est", 0.99, 0.001, estimated=True), record("m1", 0.9, 0.002), record("m2", 0.8, 0.004)]
    assert summary(rank_records(runs)) == [(1, "est"), (2, "m1"), (3, "m2")]
    measured = rank_records(runs, measured_only=True)
    assert summary(measured) == [(1, "m1"), (2, "m2")]
    assert [r.pareto for r in measured] == [True, False]  # m1 is better and cheaper than m2
    assert rank_records(runs)[0].estimated


def test_compression_summary_from_tag_and_model_metrics() -> None:
    row = rank_records([record(
        "pruned-int8", 0.9, 0.01,
        **{schema.MODEL_PARAMS: 151306, schema.MODEL_PARAMS_UNIQUE: 50000, schema.MODEL_SPARSITY: 0.8,
           schema.MODEL_WEIGHT_BITS: 8},
    )])[0]
    assert row.compression.params == 151306
    assert row.compression.summary == "none · 151k params (50k stored) · 80% sparse · 8-bit"
    tagged = Compression.from_run({schema.MODEL_PARAMS: 3946}, {schema.TAG_COMPRESSION: "pruned,int8"})
    assert tagged.techniques == ("pruned", "int8") and tagged.summary == "pruned,int8 · 3.95k params"
    assert Compression.from_run({}, {}).summary == ""
    assert Compression.from_run({}, {schema.TAG_COMPRESSION: "none"}).techniques == ()


def test_ranking_round_trips_through_its_json_form() -> None:
    rows = rank_records([record("a", 0.9, 0.01, **{schema.MODEL_PARAMS: 10}), record("b", None, 0.01)])
    ranking = Ranking(rows=rows, metric=ACC, experiments=(("1", "exp"),), measured_only=True, filter_string="x")
    data = json.loads(ranking.to_json())
    assert data["counts"] == {"rows": 2, "ranked": 1, "unranked": 1, "pareto": 1}
    assert Ranking.from_dict(data) == ranking


def test_to_pandas_has_one_line_per_row() -> None:
    frame = Ranking(rows=rank_records([record("a", 0.9, 0.01), record("b", 0.8, 0.0)])).to_pandas()
    assert list(frame["run_name"]) == ["a", "b"]
    assert frame.loc[1, "reason"] == "energy is 0"
    assert "compression_sparsity" in frame.columns


# --- real stores ------------------------------------------------------------------------------------


def log_run(client: MlflowClient, experiment_id: str, name: str, metrics: Mapping[str, float],
            tags: Mapping[str, str] | None = None, quality_metric: str | None = ACC) -> str:
    run = client.create_run(experiment_id, run_name=name)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value, step=0)
    all_tags = {schema.TAG_ESTIMATED: "false", **(tags or {})}
    if quality_metric:
        all_tags[schema.TAG_QUALITY_METRIC] = quality_metric
    for key, value in all_tags.items():
        client.set_tag(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def zoo(client: MlflowClient, experiment_id: str) -> dict[str, str]:
    """Six hand-made runs: a tie, a dominated run, an estimate, missing metric, zero and no energy."""
    e, a = schema.ENERGY_KWH, ACC
    ids = {
        "cnn": log_run(client, experiment_id, "cnn", {a: 0.98, e: 0.004, "green/model_params": 151306},
                       {schema.TAG_COMPRESSION: "pruned"}),
        "mobile": log_run(client, experiment_id, "mobile", {a: 0.90, e: 0.001}),
        "twin": log_run(client, experiment_id, "twin", {a: 0.45, e: 0.0005}),
        "mlp": log_run(client, experiment_id, "mlp", {a: 0.85, e: 0.004}, {schema.TAG_ESTIMATED: "true"}),
        "no-acc": log_run(client, experiment_id, "no-acc", {e: 0.002}),
        "zero": log_run(client, experiment_id, "zero", {a: 0.9, e: 0.0}),
        "no-energy": log_run(client, experiment_id, "no-energy", {a: 0.9}),
    }
    # A deleted run is not listed.
    client.delete_run(log_run(client, experiment_id, "deleted", {a: 0.99, e: 0.0001}))
    return ids


EXPECTED = [(1, "mobile"), (1, "twin"), (3, "cnn"), (4, "mlp"), (None, "no-energy"), (None, "zero"), (None, "no-acc")]


@pytest.fixture()
def zoo_experiment(mlflow_experiment: str, tracking_uri: str) -> tuple[str, dict[str, str]]:
    return mlflow_experiment, zoo(MlflowClient(tracking_uri), mlflow_experiment)


def test_rank_on_sqlite_reads_the_runs(zoo_experiment: tuple[str, dict[str, str]], tracking_uri: str) -> None:
    experiment_id, ids = zoo_experiment
    ranking = rank(experiment_id, tracking_uri=tracking_uri)
    assert summary(ranking.rows) == EXPECTED
    by_name = {r.run_name: r for r in ranking}
    assert by_name["cnn"].run_id == ids["cnn"] and by_name["cnn"].experiment_id == experiment_id
    assert by_name["cnn"].compression.summary == "pruned · 151k params"
    assert by_name["mlp"].estimated and not by_name["cnn"].estimated
    assert by_name["cnn"].status == "FINISHED"
    assert {r.run_name for r in ranking.pareto} == {"mobile", "twin", "cnn"}
    assert by_name["zero"].reason == "energy is 0"
    assert by_name["no-acc"].reason == f"no quality metric {ACC!r}"
    assert ranking.experiments[0][0] == experiment_id


def test_sql_path_and_client_api_path_agree(zoo_experiment: tuple[str, dict[str, str]], tracking_uri: str) -> None:
    experiment_id, _ = zoo_experiment
    fast = rank(experiment_id, tracking_uri=tracking_uri, measured_only=True)
    portable = rank_client(MlflowClient(tracking_uri), experiment_id, measured_only=True)
    assert fast == portable
    assert "mlp" not in {r.run_name for r in fast}


def test_experiment_by_name_and_the_package_level_function(zoo_experiment: tuple[str, dict[str, str]],
                                                            tracking_uri: str) -> None:
    experiment_id, _ = zoo_experiment
    name = MlflowClient(tracking_uri).get_experiment(experiment_id).name
    assert summary(mlflow_green.rank(name, tracking_uri=tracking_uri).rows) == EXPECTED
    assert mlflow_green.rank is rank


@pytest.mark.parametrize("fast", [True, False], ids=["sql", "client-api"])
def test_filter_string_selects_runs(zoo_experiment: tuple[str, dict[str, str]], tracking_uri: str, fast: bool) -> None:
    experiment_id, _ = zoo_experiment
    kwargs = {"filter_string": f"metrics.{ACC} > 0.88 and tags.`{schema.TAG_ESTIMATED}` = 'false'"}
    ranking = (rank(experiment_id, tracking_uri=tracking_uri, **kwargs) if fast
               else rank_client(MlflowClient(tracking_uri), experiment_id, **kwargs))
    assert summary(ranking.rows) == [(1, "mobile"), (2, "cnn"), (None, "no-energy"), (None, "zero")]
    assert ranking.filter_string == kwargs["filter_string"]
    by_name = rank(experiment_id, tracking_uri=tracking_uri, filter_string="attributes.run_name = 'cnn'")
    assert summary(by_name.rows) == [(1, "cnn")]


@pytest.mark.parametrize("fast", [True, False], ids=["sql", "client-api"])
def test_an_invalid_filter_says_so(mlflow_experiment: str, tracking_uri: str, fast: bool) -> None:
    with pytest.raises(RankRequestError, match="Invalid filter 'metrics.acc >'.*MLflow search syntax"):
        if fast:
            rank(mlflow_experiment, tracking_uri=tracking_uri, filter_string="metrics.acc >")
        else:
            rank_client(MlflowClient(tracking_uri), mlflow_experiment, filter_string="metrics.acc >")


@pytest.mark.parametrize("fast", [True, False], ids=["sql", "client-api"])
@pytest.mark.parametrize(("filter_string", "named"), [
    ("attributes.start_time > " + "1" * 60, "attributes.start_time is compared with 1111"),
    ("metrics.acc > 1e999", "metrics.acc is compared with 1e999, which is not a finite number"),
    ("metrics.acc > 0.5\x00", "control character U\\+0000"),
])
def test_numbers_the_database_cannot_compare_are_refused_before_it(
    mlflow_experiment: str, tracking_uri: str, fast: bool, filter_string: str, named: str
) -> None:
    """The Python API, like /green/api: no OverflowError from SQLite, no SQL text from the driver."""
    with pytest.raises(RankRequestError, match=named) as info:
        if fast:
            rank(mlflow_experiment, tracking_uri=tracking_uri, filter_string=filter_string)
        else:
            rank_client(MlflowClient(tracking_uri), mlflow_experiment, filter_string=filter_string)
    assert "SELECT" not in str(info.value) and "Overflow" not in str(info.value)


def test_unknown_experiment_lists_close_matches(mlflow_experiment: str, tracking_uri: str) -> None:
    name = MlflowClient(tracking_uri).get_experiment(mlflow_experiment).name
    with pytest.raises(NotFoundError, match="No experiment named") as info:
        rank(name[:-1] + "X", tracking_uri=tracking_uri)
    assert name in info.value.suggestions and info.value.kind == "experiment"
    assert repr(name) in str(info.value)
    with pytest.raises(NotFoundError, match="list them with: mlflow experiments search"):
        rank("zzzz-nothing-like-it-" + uuid.uuid4().hex, tracking_uri=tracking_uri)


def test_deleted_experiment_says_how_to_restore(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(f"gone-{uuid.uuid4().hex[:8]}")
    client.delete_experiment(experiment_id)
    with pytest.raises(NotFoundError, match="is deleted. Restore it with: mlflow experiments restore"):
        rank(experiment_id, tracking_uri=tracking_uri)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Nothing to rank"),
        ({"experiments": ["1"], "model": "m"}, "not both"),
        ({"model": "m", "filter_string": "metrics.a > 1"}, "cannot be combined with a model"),
        ({"experiments": [" "]}, "must not be empty"),
    ],
)
def test_requests_that_cannot_be_answered(kwargs: dict[str, object], message: str, tracking_uri: str) -> None:
    with pytest.raises(RankRequestError, match=message) as info:
        rank(tracking_uri=tracking_uri, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, GreenError) and isinstance(info.value, ValueError)


def test_registered_model_versions_are_ranked_with_aliases_and_gate(zoo_experiment: tuple[str, dict[str, str]],
                                                                    tracking_uri: str) -> None:
    _, ids = zoo_experiment
    client = MlflowClient(tracking_uri)
    name = f"digits-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    versions = {}
    for run in ("cnn", "mobile", "zero"):
        mv = client.create_model_version(name, source=f"runs:/{ids[run]}/model", run_id=ids[run])
        versions[run] = str(mv.version)
    client.set_registered_model_alias(name, "champion", versions["cnn"])
    client.set_model_version_tag(name, versions["cnn"], schema.TAG_GATE, "failed")
    client.set_model_version_tag(name, versions["cnn"], schema.TAG_GATE_REASONS, "energy 0.004 kWh > 0.001 kWh")
    client.set_model_version_tag(name, versions["mobile"], schema.TAG_GATE, "passed")
    no_run = str(client.create_model_version(name, source="s3://bucket/model").version)

    ranking = rank(model=name, tracking_uri=tracking_uri)
    assert ranking.model_name == name and ranking.experiments == ()
    rows = [(r.rank, r.model_version, r.run_name, r.model_aliases, r.gate) for r in ranking]
    assert rows == [
        (1, versions["mobile"], "mobile", (), "passed"),
        (2, versions["cnn"], "cnn", ("champion",), "failed"),
        (None, versions["zero"], "zero", (), None),
        (None, no_run, f"version {no_run}", (), None),
    ]
    assert ranking.rows[1].gate_reasons == "energy 0.004 kWh > 0.001 kWh"
    assert ranking.rows[3].reason == "version has no source run"
    assert rank_client(client, model=name) == ranking

    # The run leaderboard names each run's registered version too.
    runs = {r.run_name: r for r in rank(zoo_experiment[0], tracking_uri=tracking_uri)}
    cnn = runs["cnn"]
    assert (cnn.model_name, cnn.model_version, cnn.model_aliases) == (name, versions["cnn"], ("champion",))
    assert runs["mlp"].model_name is None


def test_unknown_model_lists_close_matches(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    name = f"resnet-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    with pytest.raises(NotFoundError, match="No registered model named") as info:
        rank(model=name + "x", tracking_uri=tracking_uri)
    assert name in info.value.suggestions and info.value.kind == "model"


def test_file_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    client = MlflowClient(uri, registry_uri=uri)
    experiment_id = client.create_experiment("file-store")
    zoo(client, experiment_id)
    ranking = rank("file-store", tracking_uri=uri, registry_uri=uri)
    assert summary(ranking.rows) == EXPECTED
