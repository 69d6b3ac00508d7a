"""Every known way around the gates, against a real `mlflow server --app-name green` on sqlite.

The cases live in bypass_cases.py; tests/e2e/test_gate_bypass_postgres.py runs them on PostgreSQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bypass_cases import CASES, GOOD, MEASURED, Setup, gate_tags, green_server, refused
from mlflow import MlflowClient

from mlflow_green.record import schema
from mlflow_green.record.run_signature import sign_run
from mlflow_green.record.signing import ENV_TRUSTED_KEYS, SigningKey, generate_key_pair
from mlflow_green.testing.registry import register_version
from mlflow_green.testing.server import GreenServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with green_server(tmp_path_factory.mktemp("bypass")) as running:
        yield running


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_gate_cannot_be_bypassed(setup: Setup, case: str) -> None:
    CASES[case](setup)


def test_gate_tags_are_written_with_workspaces_enabled(tmp_path: Path) -> None:
    """`mlflow server --enable-workspaces`: the tag writes run in the request's workspace."""
    from mlflow.utils.workspace_context import WorkspaceContext

    policy = tmp_path / "green-policy.toml"
    policy.write_text("[aliases.champion]\nmax_energy_kwh = 0.5\nbeat_current_by_percent = 5\n"
                      "[aliases.signed]\nrequire_signed = true\n")
    private, public = generate_key_pair(tmp_path / "keys")
    env = {"MLFLOW_GREEN_GATE_POLICY": str(policy), ENV_TRUSTED_KEYS: str(public)}
    with GreenServer(tmp_path, env=env, extra_args=["--enable-workspaces"]) as server:
        client = MlflowClient(server.url)
        client.create_workspace("team-a")
        for workspace in ("default", "team-a"):
            with WorkspaceContext(workspace):
                experiment_id = client.create_experiment(f"ws-{workspace}")
                model = f"ws-model-{workspace}"
                wasteful = register_version(client, experiment_id, model, {**GOOD, schema.ENERGY_KWH: 2.0}, MEASURED)
                good = register_version(client, experiment_id, model, GOOD, MEASURED)
                refused(lambda m=model, v=wasteful: client.set_registered_model_alias(m, "champion", v), "max_energy_kwh")
                client.set_registered_model_alias(model, "champion", good)
                assert gate_tags(client, model, wasteful)[schema.TAG_GATE] == "failed"
                assert gate_tags(client, model, good)[schema.TAG_GATE] == "passed"
                holder = schema.gate_holder_tag("alias", "champion")
                deadline = time.monotonic() + 10
                while holder not in client.get_registered_model(model).tags and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert json.loads(client.get_registered_model(model).tags[holder])["version"] == good
                # signed runs are verified with the workspace's artifacts
                refused(lambda m=model, v=good: client.set_registered_model_alias(m, "signed", v), "not signed")
                assert sign_run(client, str(client.get_model_version(model, good).run_id), SigningKey.from_file(private))
                client.set_registered_model_alias(model, "signed", good)
        assert "could not write gate tags" not in server.log()
