"""The team setup, for real: PostgreSQL, `mlflow server --app-name green`, trainings over HTTP,
a server outage in the middle of a training, ranking and gating."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from mlflow_green.record import schema
from mlflow_green.testing.server import GreenServer

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).parents[1] / "integrations"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


POLICY = """
[aliases.staging]
max_energy_kwh = 1.0

[aliases.champion]
measured_only = true          # no RAPL, no GPU here: estimated energy must not become champion
"""


@pytest.fixture(scope="module")
def server(postgres_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GreenServer]:
    workdir = tmp_path_factory.mktemp("team")
    policy = workdir / "green-policy.toml"
    policy.write_text(POLICY)
    with GreenServer(workdir, backend_store_uri=postgres_uri, env={"MLFLOW_GREEN_GATE_POLICY": str(policy)}) as running:
        running.policy_path = policy  # type: ignore[attr-defined]
        yield running


@pytest.fixture()
def remote(server: GreenServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The tracking URI is the server; the client gives up on a dead server after a few quick tries."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_GREEN_FLUSH_TIMEOUT_S", "120")
    yield server.url
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def _exactly_once(client: MlflowClient, run_id: str, key: str, steps: int) -> None:
    """One point per epoch (the callbacks send one point per step: the fit's final totals are the
    last epoch's point), each exactly once although the server was restarted in between."""
    history = client.get_metric_history(run_id, key)
    counts = {step: sum(1 for m in history if m.step == step) for step in range(steps)}
    assert counts == {step: 1 for step in range(steps)}, f"{key}: {counts}"
    assert len(history) == steps


def test_keras_training_survives_a_server_restart_and_every_point_arrives_once(
    remote: str, server: GreenServer, digits: tuple
) -> None:
    keras = pytest.importorskip("keras")  # the keras extra (the core suite runs without it)

    from mlflow_green.integrations.keras import GreenCallback

    class Outage(keras.callbacks.Callback):
        """Stops the tracking server after epoch 1 and brings it back after epoch 3."""

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if epoch == 1:
                server.stop()
            elif epoch == 3:
                server.start()

    x, y, xv, yv = digits
    mlflow.set_experiment("team-keras")
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    green = GreenCallback(live_metrics=False)
    history = model.fit(x, y, validation_data=(xv, yv), epochs=6, batch_size=128, callbacks=[green, Outage()], verbose=0)
    assert len(history.history["loss"]) == 6, "training went on while the server was down"
    client = MlflowClient(remote)
    run = client.get_run(green.session.run_id)
    assert run.info.status == "FINISHED"
    for key in (schema.EPOCH_ENERGY_KWH, schema.POWER_W, schema.ENERGY_KWH, schema.ENERGY_VALIDATION_KWH):
        _exactly_once(client, run.info.run_id, key, 6)
    assert run.data.metrics[schema.ENERGY_KWH] > 0
    assert run.data.tags[schema.TAG_QUALITY_METRIC] == "val_accuracy"


def test_lightning_training_logs_over_http_into_postgres(remote: str, digits: tuple) -> None:
    lightning = pytest.importorskip("lightning")  # the lightning extra (the core suite runs without it)
    from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs

    from mlflow_green.integrations.lightning import GreenCallback

    mlflow.set_experiment("team-lightning")
    train, val = loaders()
    green = GreenCallback()
    lightning.Trainer(max_epochs=3, callbacks=[green], **quiet_trainer_kwargs()).fit(digits_classifier(), train, val)
    client = MlflowClient(remote)
    run = client.get_run(green.session.run_id)
    assert run.info.status == "FINISHED"
    _exactly_once(client, run.info.run_id, schema.EPOCH_ENERGY_KWH, 3)
    assert schema.MODEL_FLOPS_PER_SAMPLE in run.data.metrics


def test_rank_and_gate_the_team_runs_on_the_server(remote: str, server: GreenServer) -> None:
    """Runs from the two trainings above: ranked through /green/api; gated on promotion."""
    pytest.importorskip("keras")  # it ranks what the Keras and Lightning trainings above logged
    pytest.importorskip("lightning")
    from click.testing import CliRunner
    from mlflow.exceptions import MlflowException

    import mlflow_green
    from mlflow_green.cli import main

    ranking = mlflow_green.rank(["team-keras", "team-lightning"], tracking_uri=remote)
    ranked = [row for row in ranking.rows if row.rank is not None]
    assert len(ranked) == 2, [(row.run_name, row.reason) for row in ranking.rows]
    assert all(row.energy_kwh > 0 and row.estimated for row in ranked)
    assert ranked[0].accuracy_per_kwh >= ranked[1].accuracy_per_kwh

    client = MlflowClient(remote)
    best = ranked[0]
    client.create_registered_model("team-digits")
    version = client.create_model_version("team-digits", f"runs:/{best.run_id}/model", run_id=best.run_id).version
    # Staging only caps the energy: the server lets it through.
    client.set_registered_model_alias("team-digits", "staging", version)
    assert client.get_model_version_by_alias("team-digits", "staging").version == version
    # Champion requires measured energy: refused server-side, the alias stays unset.
    with pytest.raises(MlflowException, match="measured_only"):
        client.set_registered_model_alias("team-digits", "champion", version)
    assert "champion" not in client.get_registered_model("team-digits").aliases
    # The same policy from CI: exit 1 with a readable report.
    result = CliRunner().invoke(
        main,
        ["gate", "-m", "team-digits", "-v", str(version), "--policy", str(server.policy_path),
         "--alias", "champion", "--tracking-uri", remote],
    )
    assert result.exit_code == 1, result.output
    assert "measured_only" in result.output
