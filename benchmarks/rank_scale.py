"""Rank 10 000 runs in a sqlite store: Python API and ``/green/api`` beside plain ``mlflow.search_runs``.

Builds (once, then reuses) a sqlite store with one experiment of ``--runs`` runs shaped like the
callbacks' runs (about 30 latest metrics with 5 epochs of history each, 18 tags, 4 params; 10 %
estimated, 2 % without energy, 1 % with zero energy; 60 % also evaluated in-run by the green
evaluator: six inference metrics at steps 1 and 32, four tags), and ``--versions`` registered
versions of those runs, half of them pointing (``green.inference_run``) to an evaluation run in a
second experiment. Then times, warm, median of ``--repeats``:

- baseline: ``mlflow.search_runs`` (pandas) + quality ÷ energy + sort, in-process on the store;
- ``mlflow_green.rank`` in-process on the store (reads only the needed columns);
- ``mlflow_green.ranking.rank_client`` (the client-API fallback used for non-SQL stores);
- ``GET /green/api/rank`` on a real ``mlflow server --app-name green`` (wall time seen by the
  client, and the server-side time from its ``Server-Timing`` header) — the budget, ≤ 1 s;
- ``mlflow_green.rank(tracking_uri=<server>)`` (goes through ``/green/api``);
- baseline through the server: ``mlflow.search_runs`` on ``tracking_uri=<server>`` + pandas;
- the same ranking ``by="inference"`` (quality per joule per prediction, evaluations joined),
  in-process and server-side: the figure stated beside the training budget.

Usage::

    python benchmarks/rank_scale.py [--runs 10000] [--versions 1000] [--repeats 5] [--db /tmp/mlflow-green-rank-scale-v3/mlflow.db]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow_green.record import schema

BUDGET_S = 1.0
EPOCHS = 5
EXPERIMENT = "rank-scale"
EVAL_EXPERIMENT = "rank-scale-evaluations"
MODEL = "rank-scale-model"
INFERENCE_STEPS = (1, 32)
_METRICS = (
    schema.ENERGY_KWH, schema.ENERGY_CPU_KWH, schema.ENERGY_RAM_KWH, schema.ENERGY_GPU_KWH, schema.EPOCH_ENERGY_KWH,
    schema.POWER_W, schema.EMISSIONS_KG, schema.CARBON_INTENSITY_G_PER_KWH, schema.DURATION_S,
    schema.ENERGY_PER_SAMPLE_J, schema.ENERGY_TRAIN_KWH, schema.ENERGY_VALIDATION_KWH, schema.ENERGY_DATA_KWH,
    schema.PROJECTED_ENERGY_KWH, schema.PROJECTED_EMISSIONS_KG, schema.ACCURACY_PER_KWH, schema.FLOP_PER_J,
    schema.MODEL_PARAMS, schema.MODEL_PARAMS_UNIQUE, schema.MODEL_PARAMS_NONZERO, schema.MODEL_SPARSITY,
    schema.MODEL_STRUCTURED_SPARSITY, schema.MODEL_WEIGHT_BITS, schema.MODEL_SIZE_BYTES,
    schema.MODEL_COMPRESSED_SIZE_BYTES, schema.MODEL_FLOPS_PER_SAMPLE,
    "loss", "accuracy", "val_loss", "val_accuracy",
)


def _inference_rows(rng: random.Random, run_id: str, start: int, metric_rows: list, latest_rows: list,
                    tag_rows: list) -> None:
    """What the green evaluator logs: six metrics at step = batch size, four tags."""
    j = rng.lognormvariate(-7, 1.0)
    figures = {schema.INFERENCE_ENERGY_PER_PREDICTION_J: j, schema.INFERENCE_POWER_W: rng.uniform(20, 90),
               schema.INFERENCE_LATENCY_MS: rng.uniform(0.1, 5), schema.INFERENCE_LATENCY_P95_MS: rng.uniform(0.2, 9),
               schema.INFERENCE_THROUGHPUT_PER_S: rng.uniform(1e3, 1e5), schema.INFERENCE_ENERGY_KWH: j * 1e4 / 3.6e6}
    for key, value in figures.items():
        for step in INFERENCE_STEPS:
            metric_rows.append({"key": key, "value": value * 32 / step, "timestamp": start + 10 + step, "step": step,
                                "is_nan": False, "run_uuid": run_id})
        latest_rows.append({"key": key, "value": value, "timestamp": start + 10 + INFERENCE_STEPS[-1],
                            "step": INFERENCE_STEPS[-1], "is_nan": False, "run_uuid": run_id})
    tags = {schema.TAG_INFERENCE_METERS: "cpu:rapl,ram:estimate", schema.TAG_INFERENCE_SCOPE: "cpu:process,ram:process",
            schema.TAG_INFERENCE_ESTIMATED: "true" if rng.random() < 0.1 else "false",
            schema.TAG_INFERENCE_BATCH_SIZE: str(INFERENCE_STEPS[-1])}
    tag_rows.extend({"key": k, "value": v, "run_uuid": run_id} for k, v in tags.items())


def build_store(db: Path, runs: int, versions: int = 1000, seed: int = 0) -> str:
    """A sqlite store with ``runs`` callback-shaped runs in experiment ``rank-scale`` (reused if present)."""
    import sqlalchemy as sa
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

    uri = f"sqlite:///{db}"
    db.parent.mkdir(parents=True, exist_ok=True)
    store = SqlAlchemyStore(uri, (db.parent / "artifacts").as_uri())
    experiment = store.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        with store.engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(SqlRun.__table__)
                                 .where(SqlRun.experiment_id == int(experiment.experiment_id))).scalar()
        has_inference = conn_has_inference(store)
        if count == runs and has_inference:
            return uri
        if not has_inference:
            raise SystemExit(f"{db} predates the inference figures: delete it or pass another --db")
        raise SystemExit(f"{db} holds {count} runs in {EXPERIMENT!r}, not {runs}: delete it or pass another --db")
    experiment_id = int(store.create_experiment(EXPERIMENT))
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    techniques = ("none", "pruned", "int8", "pruned,int8", "shared")
    run_rows, metric_rows, latest_rows, tag_rows, param_rows = [], [], [], [], []
    source_ids: list[str] = []

    def flush(conn: Any) -> None:
        for table, rows in ((SqlRun, run_rows), (SqlMetric, metric_rows), (SqlLatestMetric, latest_rows),
                            (SqlTag, tag_rows), (SqlParam, param_rows)):
            if rows:
                conn.execute(sa.insert(table.__table__), rows)
                rows.clear()

    with store.engine.begin() as conn:
        for i in range(runs):
            run_id = uuid.UUID(int=rng.getrandbits(128)).hex
            start = now_ms - (runs - i) * 60_000
            run_rows.append({
                "run_uuid": run_id, "name": f"run-{i:05d}", "source_type": "LOCAL", "source_name": "train.py",
                "entry_point_name": "", "user_id": "bench", "status": "FINISHED", "start_time": start,
                "end_time": start + 50_000, "deleted_time": None, "source_version": "", "lifecycle_stage": "active",
                "artifact_uri": f"{db.parent.as_uri()}/artifacts/{run_id}", "experiment_id": experiment_id,
            })
            energy = rng.lognormvariate(-8, 1.2)
            kind = rng.random()
            finals = {key: rng.uniform(0, 1) for key in _METRICS}
            params = rng.choice((3946, 17290, 151306))
            bits = rng.choice((8.0, 16.0, 32.0))
            finals.update({"val_accuracy": rng.uniform(0.6, 0.99), schema.ENERGY_KWH: energy,
                           schema.EMISSIONS_KG: energy * 0.475, schema.MODEL_PARAMS: params,
                           schema.MODEL_PARAMS_UNIQUE: params, schema.MODEL_WEIGHT_BITS: bits,
                           schema.MODEL_SIZE_BYTES: params * bits / 8, schema.ACCURACY_PER_KWH: 0.8 / energy})
            if kind < 0.02:
                del finals[schema.ENERGY_KWH]
            elif kind < 0.03:
                finals[schema.ENERGY_KWH] = 0.0
            for key, value in finals.items():
                for step in range(EPOCHS):
                    metric_rows.append({"key": key, "value": value * (step + 1) / EPOCHS, "timestamp": start + step,
                                        "step": step, "is_nan": False, "run_uuid": run_id})
                latest_rows.append({"key": key, "value": value, "timestamp": start + EPOCHS - 1, "step": EPOCHS - 1,
                                    "is_nan": False, "run_uuid": run_id})
            tags = {
                MLFLOW_RUN_NAME: f"run-{i:05d}", MLFLOW_USER: "bench", MLFLOW_SOURCE_NAME: "train.py",
                MLFLOW_SOURCE_TYPE: "LOCAL", schema.TAG_VERSION: "0.1.0", schema.TAG_METERS: "cpu:rapl,ram:estimate",
                schema.TAG_ESTIMATED: "true" if rng.random() < 0.1 else "false", schema.TAG_REGION: "WORLD",
                schema.TAG_INTENSITY_SOURCE: "codecarbon", schema.TAG_PUE: "1.0", schema.TAG_HARDWARE_CPU: "AMD EPYC",
                schema.TAG_HARDWARE_GPU: "none", schema.TAG_WORLD_SIZE: "1", schema.TAG_HOSTS: "1",
                schema.TAG_COMPRESSION: rng.choice(techniques), schema.TAG_QUALITY_METRIC: "val_accuracy",
                "mlflow.source.git.commit": "0" * 40, "mlflow.source.git.branch": "main",
            }
            tag_rows.extend({"key": k, "value": v, "run_uuid": run_id} for k, v in tags.items())
            if rng.random() < 0.6:
                _inference_rows(rng, run_id, start, metric_rows, latest_rows, tag_rows)
            source_ids.append(run_id)
            param_rows.extend({"key": k, "value": str(v), "run_uuid": run_id}
                              for k, v in {"epochs": EPOCHS, "batch_size": 32, "lr": 0.003, "variant": i % 7}.items())
            if len(run_rows) >= 500:
                flush(conn)
        flush(conn)
    _register(store, uri, db, source_ids[:versions], rng, now_ms)
    return uri


def _register(store: Any, uri: str, db: Path, source_ids: list[str], rng: random.Random, now_ms: int) -> None:
    """Register ``source_ids`` as versions; every other one gets an evaluation run in another experiment."""
    import sqlalchemy as sa
    from mlflow.entities.model_registry import ModelVersionTag
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun, SqlTag

    registry = RegistryStore(uri)
    registry.create_registered_model(MODEL)
    eval_experiment = int(store.create_experiment(EVAL_EXPERIMENT))
    eval_ids = {}
    run_rows, metric_rows, latest_rows, tag_rows = [], [], [], []
    for index, source in enumerate(source_ids):
        if index % 2:
            continue
        run_id = uuid.UUID(int=rng.getrandbits(128)).hex
        eval_ids[source] = run_id
        run_rows.append({
            "run_uuid": run_id, "name": f"eval-{index:05d}", "source_type": "LOCAL", "source_name": "evaluate.py",
            "entry_point_name": "", "user_id": "bench", "status": "FINISHED", "start_time": now_ms + index,
            "end_time": now_ms + index + 5_000, "deleted_time": None, "source_version": "", "lifecycle_stage": "active",
            "artifact_uri": f"{db.parent.as_uri()}/artifacts/{run_id}", "experiment_id": eval_experiment,
        })
        _inference_rows(rng, run_id, now_ms, metric_rows, latest_rows, tag_rows)
        tag_rows.append({"key": schema.TAG_QUALITY_METRIC, "value": "accuracy_score", "run_uuid": run_id})
        tag_rows.append({"key": schema.TAG_INFERENCE_MODEL_RUN, "value": source, "run_uuid": run_id})
        latest_rows.append({"key": "accuracy_score", "value": rng.uniform(0.6, 0.99), "timestamp": now_ms, "step": 0,
                            "is_nan": False, "run_uuid": run_id})
        metric_rows.append({**latest_rows[-1]})
    with store.engine.begin() as conn:
        for table, rows in ((SqlRun, run_rows), (SqlMetric, metric_rows), (SqlLatestMetric, latest_rows),
                            (SqlTag, tag_rows)):
            if rows:
                conn.execute(sa.insert(table.__table__), rows)
    for source in source_ids:
        version = registry.create_model_version(MODEL, f"runs:/{source}/model", run_id=source)
        if source in eval_ids:
            registry.set_model_version_tag(MODEL, version.version, ModelVersionTag(schema.TAG_INFERENCE_RUN,
                                                                                   eval_ids[source]))


def conn_has_inference(store: Any) -> bool:
    import sqlalchemy as sa
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric

    with store.engine.connect() as conn:
        found = conn.execute(sa.select(SqlLatestMetric.key).where(
            SqlLatestMetric.key == schema.INFERENCE_ENERGY_PER_PREDICTION_J).limit(1)).first()
    return found is not None


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of ``repeats`` calls after one warm-up call, and the last result."""
    result = fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), result


def baseline(tracking_uri: str, experiment_id: str) -> int:
    """What users write today: search_runs into pandas, divide, sort."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    df = mlflow.search_runs(experiment_ids=[experiment_id])
    energy = df[f"metrics.{schema.ENERGY_KWH}"]
    quality = df["metrics.val_accuracy"]
    df["per_kwh"] = quality / energy.where(energy > 0)
    return len(df.sort_values("per_kwh", ascending=False))


def api_timing(url: str) -> tuple[float, float]:
    """Client wall time and server-side time (Server-Timing, rank + json) of one request."""
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        response.read()
        header = response.headers.get("Server-Timing", "")
    wall = time.perf_counter() - t0
    server_ms = sum(float(part.split("dur=")[1]) for part in header.split(",") if "dur=" in part)
    return wall, server_ms / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--versions", type=int, default=1000, help="registered versions (half with an evaluation run)")
    default_db = Path(tempfile.gettempdir()) / "mlflow-green-rank-scale-v3" / "mlflow.db"
    parser.add_argument("--db", type=Path, default=default_db)
    parser.add_argument("--skip-server", action="store_true", help="only the in-process figures")
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    from mlflow import MlflowClient

    import mlflow_green
    from mlflow_green.ranking import rank_client

    t0 = time.perf_counter()
    uri = build_store(args.db, args.runs, args.versions)
    print(f"store {uri}: {args.runs} runs ready in {time.perf_counter() - t0:.1f} s")
    experiment_id = MlflowClient(uri).get_experiment_by_name(EXPERIMENT).experiment_id
    n = args.repeats
    print(f"times: warm, median of {n} (after one warm-up call)")

    base_s, count = timed(lambda: baseline(uri, experiment_id), n)
    print(f"  baseline mlflow.search_runs + pandas (in-process)   {base_s:8.3f} s   ({count} runs)")
    api_s, ranking = timed(lambda: mlflow_green.rank(experiment_id, tracking_uri=uri), n)
    print(f"  mlflow_green.rank (in-process, sqlite)                {api_s:8.3f} s   "
          f"({len(ranking.ranked)} ranked, {len(ranking.unranked)} unranked, {len(ranking.pareto)} on the frontier)")
    client_s, _ = timed(lambda: rank_client(MlflowClient(uri), experiment_id), max(1, n // 2))
    print(f"  rank_client (client-API fallback, in-process)        {client_s:8.3f} s")
    inf_s, by_inference = timed(lambda: mlflow_green.rank(experiment_id, tracking_uri=uri, by="inference"), n)
    joined = sum(1 for r in by_inference.ranked if r.inference_run_id and r.inference_run_id != r.run_id)
    print(f"  mlflow_green.rank(by='inference') (in-process)         {inf_s:8.3f} s   "
          f"({len(by_inference.ranked)} ranked, {joined} through green.inference_run, "
          f"{len(by_inference.pareto)} on the frontier)")
    if args.skip_server:
        return

    from mlflow_green.testing.server import GreenServer

    with GreenServer(args.db.parent / "server", backend_store_uri=uri) as server:
        api_timing(f"{server.url}/green/api/experiments")  # server and store started (first-start jobs done)
        url = f"{server.url}/green/api/rank?experiment_ids={experiment_id}"
        cold_wall, cold_server = api_timing(url)
        samples = [api_timing(url) for _ in range(n)]
        wall = statistics.median(s[0] for s in samples)
        server_side = statistics.median(s[1] for s in samples)
        print(f"  GET /green/api/rank, first ranking of the server       {cold_wall:8.3f} s   "
              f"(server-side {cold_server:.3f} s)")
        print(f"  GET /green/api/rank (server-side, Server-Timing)      {server_side:8.3f} s   "
              f"(budget ≤ {BUDGET_S:g} s)")
        print(f"  GET /green/api/rank (client wall time)                {wall:8.3f} s")
        inf_samples = [api_timing(url + "&by=inference") for _ in range(n)]
        inf_server = statistics.median(s[1] for s in inf_samples)
        inf_wall = statistics.median(s[0] for s in inf_samples)
        print(f"  GET /green/api/rank?by=inference (server-side)       {inf_server:8.3f} s   "
              f"(client wall {inf_wall:.3f} s; stated, the budget is for training)")
        remote_s, _ = timed(lambda: mlflow_green.rank(experiment_id, tracking_uri=server.url), n)
        print(f"  mlflow_green.rank(tracking_uri=server) via /green/api {remote_s:8.3f} s")
        remote_base_s, _ = timed(lambda: baseline(server.url, experiment_id), max(1, n // 2))
        print(f"  baseline mlflow.search_runs + pandas via the server   {remote_base_s:8.3f} s")
    verdict = "within budget" if max(server_side, wall) <= BUDGET_S else "OVER BUDGET"
    print(f"  speed-up over the in-process baseline: {base_s / api_s:.0f}x (Python API), "
          f"{remote_base_s / wall:.0f}x (through the server)")
    print(f"  verdict: {verdict}")


if __name__ == "__main__":
    main()
