"""The /green/ view's JSON API and page: on a Flask app reading a real sqlite store (fast), then on a
real ``mlflow server --app-name green --static-prefix /mlflow`` under uvicorn (slow), where the
Python API goes through /green/api and falls back to the client API on a plain MLflow server."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from mlflow import MlflowClient

from mlflow_green.errors import NotFoundError, RankRequestError
from mlflow_green.ranking import list_metric_keys, rank, rank_client
from mlflow_green.record import schema
from mlflow_green.server import view
from mlflow_green.testing.server import GreenServer

ACC = "val_accuracy"
XSS = "<script>alert(1)</script>"
STATIC = Path(view.__file__).parent / "static"


def make_runs(client: MlflowClient, name: str) -> str:
    """An experiment with four runs (one named like a script, one unranked) and a registered model."""
    experiment_id = client.create_experiment(name)
    ids = {}
    for run_name, accuracy, energy in (
        ("mobile", 0.9, 0.001), (XSS, 0.95, 0.002), ("cnn", 0.98, 0.004), ("zero", 0.9, 0.0),
    ):
        run = client.create_run(experiment_id, run_name=run_name)
        client.log_metric(run.info.run_id, ACC, accuracy)
        client.log_metric(run.info.run_id, schema.ENERGY_KWH, energy)
        client.set_tag(run.info.run_id, schema.TAG_QUALITY_METRIC, ACC)
        client.set_tag(run.info.run_id, schema.TAG_ESTIMATED, "true" if run_name == "cnn" else "false")
        ids[run_name] = run.info.run_id
    model = f"{name}-model"
    client.create_registered_model(model)
    client.create_model_version(model, source=f"runs:/{ids['cnn']}/model", run_id=ids["cnn"])
    client.create_model_version(model, source=f"runs:/{ids['mobile']}/model", run_id=ids["mobile"])
    client.set_registered_model_alias(model, "champion", "2")
    client.set_model_version_tag(model, "2", schema.TAG_GATE, "passed")
    return experiment_id


# --- fast: the blueprint on a Flask app ----------------------------------------------------------


@pytest.fixture(scope="module")
def stores(tracking_uri: str) -> tuple[Any, Any]:
    client = MlflowClient(tracking_uri)
    return client._tracking_client.store, client._get_registry_client().store


@pytest.fixture(scope="module")
def experiment(tracking_uri: str) -> tuple[str, str]:
    name = f"view-api-{uuid.uuid4().hex[:8]}"
    return make_runs(MlflowClient(tracking_uri), name), name


@pytest.fixture(scope="module")
def http(stores: tuple[Any, Any]) -> FlaskClient:
    app = Flask("view-test")
    view.register(app, stores=lambda: stores, prefix="")
    return app.test_client()


def test_experiments_lists_active_experiments(http: FlaskClient, experiment: tuple[str, str]) -> None:
    response = http.get("/green/api/experiments")
    assert response.status_code == 200 and response.mimetype == "application/json"
    names = {e["id"]: e["name"] for e in response.get_json()["experiments"]}
    assert names[experiment[0]] == experiment[1]


def test_rank_returns_the_leaderboard(http: FlaskClient, experiment: tuple[str, str], tracking_uri: str) -> None:
    response = http.get(f"/green/api/rank?experiment_ids={experiment[0]}")
    assert response.status_code == 200
    body = response.get_json()
    assert [(r["rank"], r["run_name"]) for r in body["rows"]] == [(1, "mobile"), (2, XSS), (3, "cnn"), (None, "zero")]
    assert body == rank(experiment[0], tracking_uri=tracking_uri).to_dict()
    assert body["rows"][2]["model_name"] == f"{experiment[1]}-model"
    assert re.fullmatch(r"rank;dur=[\d.]+, json;dur=[\d.]+", response.headers["Server-Timing"])
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert b"<script>" not in response.data and b"\\u003cscript\\u003e" in response.data  # escaped, decodes the same


def test_rank_by_experiment_name_metric_filter_and_measured_only(http: FlaskClient,
                                                                 experiment: tuple[str, str]) -> None:
    query = {"experiment": experiment[1], "measured_only": "true", "filter": f"metrics.{ACC} >= 0.9"}
    body = http.get("/green/api/rank", query_string=query).get_json()
    assert [r["run_name"] for r in body["rows"]] == ["mobile", XSS, "zero"]
    assert body["measured_only"] is True and body["filter"] == query["filter"]
    body = http.get("/green/api/rank", query_string={"experiment_ids": experiment[0], "metric": "nope"}).get_json()
    assert {r["reason"] for r in body["rows"]} == {"no quality metric 'nope'", "energy is 0"}


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("", 400, "Choose experiments"),
        ("experiment_ids=1&bogus=2", 400, "Unknown query parameter: bogus"),
        ("experiment_ids=1&measured_only=maybe", 400, "measured_only must be true or false"),
        ("experiment_ids=1;DROP", 400, "experiment_ids must be ids"),
        ("experiment_ids=1&metric=a&metric=b", 400, "metric given 2 times"),
        ("experiment_ids=0&filter=metrics.a%20%3E", 400, "Invalid filter"),
        ("experiment=no-such-experiment-xyz", 404, "No experiment named 'no-such-experiment-xyz'"),
        (f"experiment={'x' * 600}", 400, "Invalid experiment"),
    ],
)
def test_bad_queries_get_a_json_error(http: FlaskClient, query: str, status: int, message: str) -> None:
    response = http.get(f"/green/api/rank?{query}")
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert message in response.get_json()["error"]


def test_metrics_lists_quality_metric_candidates(http: FlaskClient, experiment: tuple[str, str],
                                                 tracking_uri: str) -> None:
    body = http.get(f"/green/api/metrics?experiment_ids={experiment[0]}").get_json()
    assert body == {"metrics": [ACC]}  # green/ metrics are not quality metrics
    from mlflow_green.ranking import _ClientTracking  # the path file stores and plain servers take

    assert list_metric_keys(_ClientTracking(MlflowClient(tracking_uri)), [experiment[1]]) == [ACC]
    assert http.get("/green/api/metrics").status_code == 400


def test_unknown_experiment_error_carries_suggestions(http: FlaskClient, experiment: tuple[str, str]) -> None:
    body = http.get("/green/api/rank", query_string={"experiment": experiment[1][:-1]}).get_json()
    assert body["type"] == "NotFoundError" and experiment[1] in body["suggestions"]


def test_models_and_a_models_versions(http: FlaskClient, experiment: tuple[str, str]) -> None:
    model = f"{experiment[1]}-model"
    models = {m["name"]: m for m in http.get("/green/api/models").get_json()["models"]}
    assert models[model]["aliases"] == {"champion": "2"} and models[model]["latest_version"] == "2"
    body = http.get(f"/green/api/models/{model}/rank").get_json()
    assert [(r["model_version"], r["run_name"], r["model_aliases"], r["gate"]) for r in body["rows"]] == [
        ("2", "mobile", ["champion"], "passed"), ("1", "cnn", [], None),
    ]
    assert http.get(f"/green/api/models/{model}/rank?measured_only=1").get_json()["counts"]["rows"] == 1
    missing = http.get(f"/green/api/models/{model}x/rank")
    assert missing.status_code == 404 and model in missing.get_json()["suggestions"]


def test_unknown_endpoint_is_a_json_404(http: FlaskClient) -> None:
    response = http.get("/green/api/nothing-here")
    assert response.status_code == 404 and "Endpoints:" in response.get_json()["error"]


def test_page_is_served_with_a_strict_content_security_policy(http: FlaskClient) -> None:
    response = http.get("/green/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    for asset in ("static/format.js", "static/green.js", "static/green.css"):
        assert asset in response.get_data(as_text=True)
        served = http.get(f"/green/{asset}")
        assert served.status_code == 200 and served.headers["Content-Security-Policy"] == csp
    assert http.get("/green").status_code == 308  # to /green/, so relative URLs resolve


class _Inline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script>")
        self.problems += [f"{tag} {name}=" for name in names if name.startswith("on") or name == "style"]
        if tag == "style":
            self.problems.append("inline <style>")


def test_static_files_need_no_inline_code_and_nothing_from_another_origin() -> None:
    html = (STATIC / "index.html").read_text()
    parser = _Inline()
    parser.feed(html)
    assert parser.problems == []
    for path in STATIC.iterdir():
        text = path.read_text()
        text = text.replace("http://www.w3.org/2000/svg", "")  # an XML namespace, never fetched
        assert not re.search(r"(https?:)?//[\w.-]+\.[a-z]{2,}/", text), path.name
        assert "@import" not in text and "@font-face" not in text, path.name
    script = (STATIC / "green.js").read_text() + (STATIC / "format.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "eval(" not in script


def test_registered_under_a_prefix(stores: tuple[Any, Any], experiment: tuple[str, str]) -> None:
    app = Flask("prefixed")
    view.register(app, stores=lambda: stores, prefix="/mlflow/")
    client = app.test_client()
    assert client.get("/mlflow/green/").status_code == 200
    assert client.get(f"/mlflow/green/api/rank?experiment_ids={experiment[0]}").get_json()["counts"]["ranked"] == 3
    assert client.get("/green/").status_code == 404


# --- slow: a real server ---------------------------------------------------------------------------

PREFIX = "/mlflow"
QUIET = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GreenServer]:
    workdir = tmp_path_factory.mktemp("view-server")
    with GreenServer(workdir, extra_args=["--static-prefix", PREFIX], env=QUIET) as running:
        yield running


@pytest.fixture(scope="module")
def remote(server: GreenServer) -> tuple[str, str]:
    name = f"remote-{uuid.uuid4().hex[:8]}"
    return make_runs(MlflowClient(server.tracking_uri), name), name


@pytest.mark.slow
def test_real_server_serves_mlflow_and_the_view_under_the_prefix(server: GreenServer, remote: tuple[str, str]) -> None:
    import urllib.request

    base = server.url + PREFIX
    with urllib.request.urlopen(f"{base}/") as response:  # MLflow's own UI is still there
        assert response.status == 200 and b"<html" in response.read().lower()
    with urllib.request.urlopen(f"{base}/green/") as response:
        assert response.headers["Content-Security-Policy"] == view.CONTENT_SECURITY_POLICY
        assert b"static/green.js" in response.read()
    with urllib.request.urlopen(f"{base}/green/static/green.js") as response:
        assert response.status == 200 and "javascript" in response.headers["Content-Type"]


@pytest.mark.slow
def test_python_api_on_a_remote_green_server_goes_through_green_api(server: GreenServer,
                                                                    remote: tuple[str, str]) -> None:
    uri = server.tracking_uri
    ranking = rank(remote[1], tracking_uri=uri)
    if uri.endswith(PREFIX):  # MLflow 3: the REST API and /green/api share the prefix (2.x: the client API answers)
        assert f"GET {PREFIX}/green/api/rank?" in server.log()
    assert [(r.rank, r.run_name) for r in ranking] == [(1, "mobile"), (2, XSS), (3, "cnn"), (None, "zero")]
    assert ranking == rank_client(MlflowClient(uri), remote[1])
    model = rank(model=f"{remote[1]}-model", tracking_uri=uri, measured_only=True)
    assert [(r.model_version, r.gate) for r in model] == [("2", "passed")]
    with pytest.raises(NotFoundError, match="Did you mean") as info:
        rank(remote[1] + "x", tracking_uri=uri)
    assert remote[1] in info.value.suggestions
    with pytest.raises(RankRequestError, match="Invalid filter"):
        rank(remote[1], tracking_uri=uri, filter_string="metrics.a >")


@pytest.mark.slow
def test_python_api_falls_back_to_the_client_api_on_a_plain_mlflow_server(tmp_path: Path) -> None:
    with GreenServer(tmp_path, app_name=None, env=QUIET) as plain:
        name = f"plain-{uuid.uuid4().hex[:8]}"
        make_runs(MlflowClient(plain.url), name)
        ranking = rank(name, tracking_uri=plain.url)
        assert [(r.rank, r.run_name) for r in ranking] == [(1, "mobile"), (2, XSS), (3, "cnn"), (None, "zero")]
        assert [r.model_version for r in rank(model=f"{name}-model", tracking_uri=plain.url)] == ["2", "1"]
        if "GET /api/2.0/" in plain.log():  # MLflow 3's server logs requests (2.x's gunicorn does not)
            assert "GET /green/api/rank" in plain.log()  # asked once, got the plain server's 404
