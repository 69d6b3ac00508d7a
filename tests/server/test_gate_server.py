"""Server-side gates on a real `mlflow server --app-name green` with MLFLOW_GREEN_GATE_POLICY set.

MlflowClient.set_registered_model_alias / transition_model_version_stage on a failing version
raise and change nothing; on a passing version they apply. The UI's /ajax-api/ path and a
--static-prefix are refused the same way; a malformed policy stops the server from starting.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Iterator, Mapping
from email.message import Message
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_green.errors import GreenError
from mlflow_green.record import schema
from mlflow_green.testing.registry import register_version
from mlflow_green.testing.server import GreenServer

pytestmark = pytest.mark.slow

POLICY = """
[default]
measured_only = true

[aliases.champion]
max_energy_kwh = 0.5
min_accuracy_per_kwh = 1000
beat_current_by_percent = 5

[aliases.staging]
max_energy_kwh = 5

[stages.Production]
max_energy_kwh = 0.5
"""

GOOD = ({schema.ENERGY_KWH: 0.2, schema.ACCURACY_PER_KWH: 4500.0}, {schema.TAG_ESTIMATED: "false"})
WASTEFUL = ({schema.ENERGY_KWH: 2.0, schema.ACCURACY_PER_KWH: 450.0}, {schema.TAG_ESTIMATED: "true"})
GATE_TAGS = (schema.TAG_GATE, schema.TAG_GATE_REASONS, schema.TAG_GATE_POLICY)
QUIET = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job-runner processes: faster start, less noise


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GreenServer]:
    workdir = tmp_path_factory.mktemp("gate-server")
    policy = workdir / "green-policy.toml"
    policy.write_text(POLICY)
    with GreenServer(workdir, env={"MLFLOW_GREEN_GATE_POLICY": str(policy), **QUIET}) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: GreenServer) -> MlflowClient:
    return MlflowClient(server.url)


@pytest.fixture(scope="module")
def experiment_id(client: MlflowClient) -> str:
    return client.create_experiment(f"gates-{uuid.uuid4().hex[:8]}")


@pytest.fixture()
def model(client: MlflowClient) -> str:
    name = f"gated-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    return name


def _version(client: MlflowClient, experiment_id: str, model: str, logged: tuple[Mapping[str, float], Mapping[str, str]]) -> str:
    return register_version(client, experiment_id, model, *logged)


def _gate_tags(client: MlflowClient, model: str, version: str, timeout_s: float = 10.0) -> dict[str, str]:
    """The version's green.gate* tags; the server writes them just after answering."""
    deadline = time.monotonic() + timeout_s
    while True:
        tags = client.get_model_version(model, version).tags
        if all(key in tags for key in GATE_TAGS) or time.monotonic() > deadline:
            return {k: v for k, v in tags.items() if k.startswith("green.gate")}
        time.sleep(0.05)


def _post(url: str, body: dict) -> tuple[int, dict, Message]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}"), response.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers


def test_a_failing_version_does_not_get_the_alias(client: MlflowClient, experiment_id: str, model: str) -> None:
    wasteful = _version(client, experiment_id, model, WASTEFUL)
    with pytest.raises(MlflowException) as caught:
        client.set_registered_model_alias(model, "champion", wasteful)
    message = str(caught.value)
    assert caught.value.error_code == "PERMISSION_DENIED"
    assert f"mlflow-green gate refused setting alias 'champion' for model '{model}' version {wasteful}" in message
    for words in ("max_energy_kwh: 2 kWh > limit 500 Wh", "min_accuracy_per_kwh: 450 per kWh < minimum 1,000 per kWh", "measured_only: energy is estimated"):
        assert words in message
    assert "champion" not in client.get_registered_model(model).aliases
    tags = _gate_tags(client, model, wasteful)
    assert tags[schema.TAG_GATE] == "failed"
    assert tags[schema.TAG_GATE_REASONS].startswith("max_energy_kwh: 2 kWh > limit 500 Wh; ")
    assert tags[schema.TAG_GATE_POLICY].startswith("green-policy.toml [aliases.champion] sha256:")


def test_a_passing_version_gets_the_alias(client: MlflowClient, experiment_id: str, model: str) -> None:
    good = _version(client, experiment_id, model, GOOD)
    client.set_registered_model_alias(model, "champion", good)
    assert str(client.get_registered_model(model).aliases["champion"]) == good
    assert _gate_tags(client, model, good)[schema.TAG_GATE] == "passed"


def test_the_new_champion_must_beat_the_current_one(client: MlflowClient, experiment_id: str, model: str) -> None:
    current = _version(client, experiment_id, model, GOOD)
    client.set_registered_model_alias(model, "champion", current)
    barely = _version(client, experiment_id, model, ({**GOOD[0], schema.ACCURACY_PER_KWH: 4600.0}, GOOD[1]))
    with pytest.raises(MlflowException, match=rf"beat_current_by_percent: 4,600 per kWh < 4,725 per kWh \(version {current}, which holds alias champion"):
        client.set_registered_model_alias(model, "champion", barely)
    clearly = _version(client, experiment_id, model, ({**GOOD[0], schema.ACCURACY_PER_KWH: 5000.0}, GOOD[1]))
    client.set_registered_model_alias(model, "champion", clearly)
    assert str(client.get_registered_model(model).aliases["champion"]) == clearly


def test_stage_transitions_are_gated(client: MlflowClient, experiment_id: str, model: str) -> None:
    wasteful, good = (_version(client, experiment_id, model, logged) for logged in (WASTEFUL, GOOD))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        with pytest.raises(MlflowException, match=r"refused transition to stage 'Production'.*max_energy_kwh: 2 kWh > limit 500 Wh"):
            client.transition_model_version_stage(model, wasteful, "production")
        assert client.get_model_version(model, wasteful).current_stage == "None"
        client.transition_model_version_stage(model, good, "Production")
        assert client.get_model_version(model, good).current_stage == "Production"
        client.transition_model_version_stage(model, wasteful, "Staging")  # not covered: not gated
        assert client.get_model_version(model, wasteful).current_stage == "Staging"


def test_aliases_the_policy_does_not_cover_pass_through(client: MlflowClient, experiment_id: str, model: str) -> None:
    wasteful = _version(client, experiment_id, model, WASTEFUL)
    client.set_registered_model_alias(model, "canary", wasteful)
    assert str(client.get_registered_model(model).aliases["canary"]) == wasteful
    assert schema.TAG_GATE not in client.get_model_version(model, wasteful).tags


def test_the_ui_path_gets_a_json_403_naming_the_failed_rules(
    server: GreenServer, client: MlflowClient, experiment_id: str, model: str
) -> None:
    wasteful = _version(client, experiment_id, model, WASTEFUL)
    url = f"{server.url}/ajax-api/2.0/mlflow/registered-models/alias"
    status, body, headers = _post(url, {"name": model, "alias": "champion", "version": wasteful})
    assert status == 403
    assert body["error_code"] == "PERMISSION_DENIED"
    assert body["gate"]["failed_rules"] == ["max_energy_kwh", "min_accuracy_per_kwh", "measured_only"]
    assert {r["rule"]: r["actual"] for r in body["gate"]["rules"]}["max_energy_kwh"] == 2.0
    assert headers["X-MLflow-Green-Gate"] == "failed"
    assert float(headers["X-MLflow-Green-Gate-Ms"]) > 0
    assert "champion" not in client.get_registered_model(model).aliases

    good = _version(client, experiment_id, model, GOOD)
    status, _, headers = _post(url, {"name": model, "alias": "champion", "version": good})
    assert status == 200 and headers["X-MLflow-Green-Gate"] == "passed"


def test_unknown_versions_and_malformed_requests_get_mlflow_s_own_errors(server: GreenServer, model: str) -> None:
    url = f"{server.url}/api/2.0/mlflow/registered-models/alias"
    status, body, _ = _post(url, {"name": model, "alias": "champion", "version": "42"})
    assert status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    status, body, _ = _post(url, {"name": model, "alias": "champion"})
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"


def test_prompts_are_not_gated(client: MlflowClient) -> None:
    name = f"prompt-{uuid.uuid4().hex[:8]}"
    prompt = client.register_prompt(name, "Summarise {{text}} in one line.")
    client.set_prompt_alias(name, "champion", prompt.version)
    if hasattr(client, "get_prompt_version_by_alias"):  # MLflow 3
        assert client.get_prompt_version_by_alias(name, "champion").version == prompt.version
    else:  # MLflow 2.x (the core suite runs on both)
        assert client.load_prompt(f"prompts:/{name}@champion").version == prompt.version


def test_a_static_prefix_is_gated_too(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[aliases.champion]\nmax_energy_kwh = 0.5\n")
    env = {"MLFLOW_GREEN_GATE_POLICY": str(policy), **QUIET}
    with GreenServer(tmp_path, env=env, extra_args=["--static-prefix", "/mlflow"]) as server:
        client = MlflowClient(server.tracking_uri)
        experiment_id = client.create_experiment("prefixed")
        model = "prefixed-model"
        client.create_registered_model(model)
        wasteful = _version(client, experiment_id, model, WASTEFUL)
        with pytest.raises(MlflowException, match="max_energy_kwh"):
            client.set_registered_model_alias(model, "champion", wasteful)
        status, body, _ = _post(
            f"{server.url}/mlflow/ajax-api/2.0/mlflow/registered-models/alias",
            {"name": model, "alias": "champion", "version": wasteful},
        )
        assert status == 403 and body["gate"]["failed_rules"] == ["max_energy_kwh"]
        assert not client.get_registered_model(model).aliases


def test_a_malformed_policy_stops_the_server_with_the_key_named(tmp_path: Path) -> None:
    policy = tmp_path / "broken.toml"
    policy.write_text("[aliases.champion]\nmax_energy_kwh = 'half'\n")
    server = GreenServer(tmp_path, env={"MLFLOW_GREEN_GATE_POLICY": str(policy), **QUIET}, startup_timeout_s=60)
    with pytest.raises(GreenError) as caught:
        server.start()
    server.stop()
    assert "broken.toml: [aliases.champion] max_energy_kwh: must be a finite number >= 0 (kWh), got 'half' (str)" in str(caught.value)
