"""/green/api against hostile requests: many experiment ids, numbers out of range, database errors,
quotes in model names, control characters — on the view's blueprint over a real sqlite store.

The same requests go to a real `mlflow server --app-name green` on sqlite and on PostgreSQL in
bypass_cases.py (case ``api_requests_on_this_backend``)."""

from __future__ import annotations

import sqlite3
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from mlflow import MlflowClient

from mlflow_green.record import schema
from mlflow_green.server import view
from mlflow_green.server.api_checks import MAX_EXPERIMENTS

BIG = "1" + "0" * 59
QUOTED = "it's a \"quoted\" model"
LEAKS = ("SQL", "sqlite", "psycopg", "SELECT", "Traceback", "OverflowError", "sqlalchemy")


def _seed(client: MlflowClient) -> tuple[str, str]:
    experiment_id = client.create_experiment(f"hardening-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment_id, run_name="r1")
    client.log_metric(run.info.run_id, "val_accuracy", 0.9)
    client.log_metric(run.info.run_id, schema.ENERGY_KWH, 0.01)
    client.set_tag(run.info.run_id, schema.TAG_QUALITY_METRIC, "val_accuracy")
    model = f"{QUOTED} {uuid.uuid4().hex[:6]}"
    client.create_registered_model(model)
    client.create_model_version(model, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    return experiment_id, model


@pytest.fixture(scope="module")
def seeded(tracking_uri: str) -> tuple[str, str]:
    return _seed(MlflowClient(tracking_uri))


@pytest.fixture(scope="module")
def http(tracking_uri: str) -> FlaskClient:
    client = MlflowClient(tracking_uri)
    stores = (client._tracking_client.store, client._get_registry_client().store)
    app = Flask("hardening")
    view.register(app, stores=lambda: stores, prefix="")
    return app.test_client()


def _get(http: FlaskClient, path: str, **params: str) -> tuple[int, dict[str, Any]]:
    response = http.get(f"/green/api/{path}?{urllib.parse.urlencode(params)}")
    return response.status_code, response.get_json()


def _clean(body: dict[str, Any]) -> None:
    for word in LEAKS:
        assert word not in body["error"], body


def test_ten_thousand_copies_of_one_experiment_id_are_one_lookup(http: FlaskClient, seeded: tuple[str, str]) -> None:
    experiment_id, _ = seeded
    status, body = _get(http, "rank", experiment_ids=",".join([experiment_id] * 10_000))
    assert status == 200, body
    assert [e["id"] for e in body["experiments"]] == [experiment_id]
    assert [r["run_name"] for r in body["rows"]] == ["r1"]


def test_more_than_the_cap_of_experiments_is_a_400_naming_the_cap(http: FlaskClient, seeded: tuple[str, str]) -> None:
    ids = ",".join(str(10_000_000 + i) for i in range(MAX_EXPERIMENTS + 1))
    status, body = _get(http, "rank", experiment_ids=ids)
    assert status == 400
    assert body["error"] == (f"Too many experiments: {MAX_EXPERIMENTS + 1} distinct ones asked, the cap is "
                             f"{MAX_EXPERIMENTS} per request. Rank fewer at a time.")
    status, body = _get(http, "rank", experiment_ids=",".join(ids.split(",")[:MAX_EXPERIMENTS]))
    assert status == 404 and body["type"] == "NotFoundError"  # at the cap: looked up, the unknown ones named
    assert _get(http, "metrics", experiment_ids=ids)[0] == 400


@pytest.mark.parametrize(
    ("filter_string", "words"),
    [
        (f"attributes.start_time > {BIG}", f"attributes.start_time is compared with {BIG}, which is out of range"),
        (f"attributes.end_time < -{BIG}", "attributes.end_time is compared with -1000"),
        (f"created > {BIG}", "attributes.created is compared with"),
        ("attributes.start_time > 9223372036854775808", "out of range (a time in milliseconds, a 64-bit integer)"),
        ("metrics.val_accuracy > 1e400", "metrics.val_accuracy is compared with 1e400, which is not a finite number"),
        ("params.x = 'a\x00b'", "it holds the control character U+0000"),
    ],
    ids=["start-60-digits", "end-negative", "created", "int64-plus-one", "metric-1e400", "nul"],
)
def test_numbers_in_filters_are_checked_before_the_database(http: FlaskClient, seeded: tuple[str, str],
                                                            filter_string: str, words: str) -> None:
    status, body = _get(http, "rank", experiment_ids=seeded[0], filter=filter_string)
    assert status == 400 and body["type"] == "RankRequestError", body
    assert words in body["error"]
    _clean(body)


def test_numbers_in_range_still_filter(http: FlaskClient, seeded: tuple[str, str]) -> None:
    status, body = _get(http, "rank", experiment_ids=seeded[0], filter="attributes.start_time > 1 and metrics.val_accuracy > 1e300")
    assert status == 200 and body["rows"] == []


def test_a_database_error_is_a_clean_400_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A real database fault (a table gone) behind the view: the client gets our message only."""
    db = tmp_path / "broken.db"
    client = MlflowClient(f"sqlite:///{db}")
    experiment_id, _ = _seed(client)
    stores = (client._tracking_client.store, client._get_registry_client().store)
    app = Flask("broken")
    view.register(app, stores=lambda: stores, prefix="")
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TABLE latest_metrics")
    status, body = _get(app.test_client(), "rank", experiment_ids=experiment_id)
    assert status == 400 and body["type"] == "DatabaseError"
    assert body["error"].startswith("The database could not answer this request")
    _clean(body)
    assert any("latest_metrics" in (r.exc_text or "") for r in caplog.records), "the detail is in the server log"


def test_a_model_name_with_both_quotes_ranks(http: FlaskClient, seeded: tuple[str, str]) -> None:
    _, model = seeded
    status, body = _get(http, f"models/{urllib.parse.quote(model, safe='')}/rank")
    assert status == 200, body
    assert body["model_name"] == model and [r["model_version"] for r in body["rows"]] == ["1"]
