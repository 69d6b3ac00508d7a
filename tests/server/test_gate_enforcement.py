"""The gate hook on a small Flask app with MLflow's endpoint names, over a real sqlite store (fast suite).

The end-to-end tests with a real `mlflow server --app-name green` are in test_gate_server.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask, jsonify, request
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from mlflow_green.errors import PolicyError
from mlflow_green.gates import StoreRegistry, loads_policy
from mlflow_green.gates.registry import Registry
from mlflow_green.record import schema
from mlflow_green.server import gate_enforcement
from mlflow_green.server.gate_enforcement import GATE_HEADER, GATE_MS_HEADER, GateEnforcer

POLICY = "[aliases.champion]\nmax_energy_kwh = 0.5\nmeasured_only = true\n[stages.Production]\nmax_energy_kwh = 0.5\n"
ALIAS_URL = "/api/2.0/mlflow/registered-models/alias"
STAGE_URL = "/ajax-api/2.0/mlflow/model-versions/transition-stage"


def _app(client: MlflowClient, enforcer: GateEnforcer) -> Flask:
    """Flask app whose views carry MLflow's endpoint names and apply the request to the store, as MLflow's do."""
    app = Flask(__name__)
    store = client._get_registry_client().store

    def set_alias() -> ResponseReturnValue:
        body = request.get_json(force=True)
        if "version" not in body:
            return jsonify(error_code="INVALID_PARAMETER_VALUE", message="Missing value for required parameter 'version'"), 400
        store.set_registered_model_alias(body["name"], body["alias"], body["version"])
        return jsonify({})

    def transition() -> ResponseReturnValue:
        body = request.get_json(force=True)
        store.transition_model_version_stage(body["name"], body["version"], body["stage"], archive_existing_versions=False)
        return jsonify({})

    for path in (ALIAS_URL, "/ajax-api/2.0/mlflow/registered-models/alias"):
        app.add_url_rule(path, "_set_registered_model_alias", set_alias, methods=["POST"])
    app.add_url_rule(STAGE_URL, "_transition_stage", transition, methods=["POST"])
    app.before_request(enforcer.before_request)
    app.after_request(enforcer.after_request)
    return app


@pytest.fixture()
def client(mlflow_experiment: str, tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri)


@pytest.fixture()
def model(client: MlflowClient) -> str:
    name = f"hooked-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    return name


@pytest.fixture()
def enforcer(client: MlflowClient) -> GateEnforcer:
    """Reads and writes the session's sqlite store directly, as the server does with its own stores."""
    stores = StoreRegistry(client._tracking_client.store, client._get_registry_client().store)
    return GateEnforcer(loads_policy(POLICY, source="green-policy.toml"), registry_factory=lambda: stores)


@pytest.fixture()
def http(client: MlflowClient, enforcer: GateEnforcer) -> FlaskClient:
    return _app(client, enforcer).test_client()


def _version(client: MlflowClient, experiment_id: str, model: str, energy_kwh: float, estimated: str = "false") -> str:
    run_id = client.create_run(experiment_id).info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(schema.ENERGY_KWH, energy_kwh, int(time.time() * 1000), 0)],
        tags=[RunTag(schema.TAG_ESTIMATED, estimated)],
    )
    return str(client.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id).version)


def test_a_failing_request_is_refused_and_not_applied(
    http: FlaskClient, client: MlflowClient, enforcer: GateEnforcer, mlflow_experiment: str, model: str
) -> None:
    version = _version(client, mlflow_experiment, model, 0.9, estimated="true")
    response = http.post(ALIAS_URL, json={"name": model, "alias": "champion", "version": version})
    assert response.status_code == 403
    body = response.get_json()
    assert body["error_code"] == "PERMISSION_DENIED"
    assert body["message"].startswith(
        f"mlflow-green gate refused setting alias 'champion' for model '{model}' version {version} "
        "(policy green-policy.toml [aliases.champion] sha256:"
    )
    assert body["gate"]["failed_rules"] == ["max_energy_kwh", "measured_only"]
    assert response.headers[GATE_HEADER] == "failed" and float(response.headers[GATE_MS_HEADER]) > 0
    assert "champion" not in client.get_registered_model(model).aliases
    assert enforcer.tag_writer.flush(10.0)
    tags = client.get_model_version(model, version).tags
    assert tags[schema.TAG_GATE] == "failed"
    assert tags[schema.TAG_GATE_REASONS].startswith("max_energy_kwh: 900 Wh > limit 500 Wh; measured_only: ")


def test_a_passing_request_is_applied(
    http: FlaskClient, client: MlflowClient, enforcer: GateEnforcer, mlflow_experiment: str, model: str
) -> None:
    version = _version(client, mlflow_experiment, model, 0.1)
    response = http.post(ALIAS_URL, json={"name": model, "alias": "champion", "version": version})
    assert response.status_code == 200 and response.headers[GATE_HEADER] == "passed"
    assert str(client.get_registered_model(model).aliases["champion"]) == version
    assert enforcer.tag_writer.flush(10.0)
    assert client.get_model_version(model, version).tags[schema.TAG_GATE] == "passed"


def test_stage_transitions(http: FlaskClient, client: MlflowClient, mlflow_experiment: str, model: str) -> None:
    wasteful, good = _version(client, mlflow_experiment, model, 0.9), _version(client, mlflow_experiment, model, 0.1)
    refused = http.post(STAGE_URL, json={"name": model, "version": wasteful, "stage": "production"})
    assert refused.status_code == 403 and "transition to stage 'Production'" in refused.get_json()["message"]
    assert client.get_model_version(model, wasteful).current_stage == "None"
    assert http.post(STAGE_URL, json={"name": model, "version": good, "stage": "Production"}).status_code == 200
    assert http.post(STAGE_URL, json={"name": model, "version": wasteful, "stage": "Staging"}).status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"alias": "canary"}, 200),  # not covered by the policy
        ({"alias": "champion", "version": None}, 400),  # malformed: MLflow's own error
        ({"alias": "champion", "version": "77"}, 404),  # unknown version: MLflow's own error
    ],
    ids=["uncovered", "malformed", "unknown-version"],
)
def test_what_passes_through_or_gets_mlflow_s_own_error(
    http: FlaskClient, client: MlflowClient, mlflow_experiment: str, model: str, body: dict, status: int
) -> None:
    version = _version(client, mlflow_experiment, model, 0.9)
    payload = {"name": model, "version": version, **body}
    if payload["version"] is None:
        del payload["version"]
    response = http.post(ALIAS_URL, json=payload)
    assert response.status_code == status
    assert GATE_HEADER not in response.headers or status == 404
    if status == 404:
        assert response.get_json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_prompt_versions_are_not_gated(http: FlaskClient, client: MlflowClient) -> None:
    name = f"prompt-{uuid.uuid4().hex[:8]}"
    version = str(client.register_prompt(name, "Summarise {{text}}.").version)
    response = http.post(ALIAS_URL, json={"name": name, "alias": "champion", "version": version})
    assert response.status_code == 200 and response.headers[GATE_HEADER] == "skipped (prompt)"
    if hasattr(client, "get_prompt_version_by_alias"):  # MLflow 3
        assert client.get_prompt_version_by_alias(name, "champion").version == int(version)
    else:  # MLflow 2.x (the core suite runs on both)
        assert client.load_prompt(f"prompts:/{name}@champion").version == int(version)


def test_a_check_that_cannot_run_refuses_the_request(client: MlflowClient, mlflow_experiment: str, model: str) -> None:
    version = _version(client, mlflow_experiment, model, 0.1)

    def broken() -> Registry:
        raise RuntimeError("database is locked")

    enforcer = GateEnforcer(loads_policy(POLICY), registry_factory=broken)
    response = _app(client, enforcer).test_client().post(ALIAS_URL, json={"name": model, "alias": "champion", "version": version})
    assert response.status_code == 403
    assert "could not check" in response.get_json()["message"] and "database is locked" in response.get_json()["message"]
    assert "champion" not in client.get_registered_model(model).aliases


def test_register_reads_the_policy_from_the_environment(tmp_path: Path) -> None:
    assert gate_enforcement.register(Flask("off"), environ={}) is None
    policy = tmp_path / "green-policy.toml"
    policy.write_text(POLICY)
    app = Flask("on")
    enforcer = gate_enforcement.register(app, environ={"MLFLOW_GREEN_GATE_POLICY": str(policy)})
    assert enforcer is not None and app.extensions["mlflow_green_gates"] is enforcer
    assert enforcer.policy.covers(alias="champion")
    policy.write_text("[aliases.champion]\nmax_energy_kwh = nan\n")
    with pytest.raises(PolicyError, match=r"\[aliases.champion\] max_energy_kwh: must be a finite number >= 0 \(kWh\), got nan"):
        gate_enforcement.register(Flask("bad"), environ={"MLFLOW_GREEN_GATE_POLICY": str(policy)})


def test_the_tag_writer_keeps_order_and_survives_a_failing_write() -> None:
    writer = gate_enforcement.TagWriter()
    done: list[int] = []

    def boom() -> None:
        raise RuntimeError("disk full")

    writes: list[Callable[[], None]] = [lambda: done.append(1), boom, lambda: done.append(2)]
    for write in writes:
        writer.submit(write)
    assert writer.flush(5.0) and done == [1, 2]


def test_a_policy_requiring_signatures_needs_trusted_keys_at_start(tmp_path: Path) -> None:
    from mlflow_green.errors import SignatureError
    from mlflow_green.record.signing import ENV_TRUSTED_KEYS, generate_key_pair

    policy = tmp_path / "signed.toml"
    policy.write_text("[aliases.champion]\nmax_energy_kwh = 0.5\nrequire_signed = true\n")
    environ = {"MLFLOW_GREEN_GATE_POLICY": str(policy)}
    with pytest.raises(SignatureError, match=r"\[aliases.champion\] sets require_signed = true, but no public key is trusted"):
        gate_enforcement.register(Flask("unsigned"), environ=environ)
    with pytest.raises(SignatureError, match="cannot read the trusted public key"):
        gate_enforcement.register(Flask("missing"), environ={**environ, ENV_TRUSTED_KEYS: str(tmp_path / "nope.pub")})
    _, public = generate_key_pair(tmp_path / "keys")
    enforcer = gate_enforcement.register(Flask("signed"), environ={**environ, ENV_TRUSTED_KEYS: str(public)})
    assert enforcer is not None and enforcer.trusted_keys is not None and len(enforcer.trusted_keys) == 1
