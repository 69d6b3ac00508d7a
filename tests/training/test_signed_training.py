"""Signed measurements from real trainings: track(), the Keras and Lightning callbacks sign at the end of
each fit (and evaluation) with MLFLOW_GREEN_SIGNING_KEY; the gate's require_signed and `mlflow-green
verify` accept them and name any value changed since; a bad key fails at construction; a server that
is down at the end of the fit gets the signature once the spooled values reach it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

import mlflow_green
from mlflow_green.cli import main
from mlflow_green.errors import ConfigError, SignatureError
from mlflow_green.gates import check, loads_policy
from mlflow_green.record import schema
from mlflow_green.record.run_signature import verify_run
from mlflow_green.record.signing import ENV_SIGNING_KEY, ENV_TRUSTED_KEYS, TrustedKeys, generate_key_pair
from mlflow_green.testing import FakeMeter, OutageRelay
from mlflow_green.testing.server import GreenServer

SIGNED_POLICY = loads_policy("[default]\nmax_energy_kwh = 1\nrequire_signed = true\n")


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return generate_key_pair(tmp_path_factory.mktemp("signing-keys"))


@pytest.fixture()
def signing(key_pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> TrustedKeys:
    """The training host signs (MLFLOW_GREEN_SIGNING_KEY); the verifier trusts the public key."""
    monkeypatch.setenv(ENV_SIGNING_KEY, str(key_pair[0]))
    monkeypatch.setenv(ENV_TRUSTED_KEYS, str(key_pair[1]))
    return TrustedKeys.from_paths([key_pair[1]])


def _register(client: MlflowClient, run_id: str) -> tuple[str, str]:
    name = f"signed-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    return name, str(client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version)


def test_track_signs_and_the_gate_verifies(mlflow_experiment: str, signing: TrustedKeys) -> None:
    with mlflow_green.track(meters=[FakeMeter({"cpu:0": 40.0, "ram:0": 5.0})]) as t:
        t.log_step(0, samples=100)
        t.log_step(1, samples=100)
    client = MlflowClient()
    verification = verify_run(client, t.run_id, signing)
    assert verification.ok, verification.reason
    model, version = _register(client, t.run_id)
    assert check(model, version, SIGNED_POLICY, client=client).passed
    # the forgery: a tiny energy and "measured" written over the signed values
    client.log_metric(t.run_id, schema.ENERGY_KWH, 1e-12, step=50)
    client.set_tag(t.run_id, schema.TAG_ESTIMATED, "true" if client.get_run(t.run_id).data.tags[schema.TAG_ESTIMATED] == "false" else "false")
    result = check(model, version, SIGNED_POLICY, client=client)
    [failed] = result.failed
    assert failed.rule == "require_signed" and "green/energy_kwh: signed" in failed.detail and ", now 1e-12" in failed.detail
    assert "green.estimated: signed" in failed.detail
    verify_cli = CliRunner().invoke(main, ["verify", "-r", t.run_id, "--tracking-uri", mlflow.get_tracking_uri()])
    assert verify_cli.exit_code == 1 and "tampered" in verify_cli.output


def test_without_a_signing_key_runs_are_unsigned_and_the_gate_says_so(mlflow_experiment: str, key_pair: tuple[Path, Path]) -> None:
    with mlflow_green.track(meters=[FakeMeter({"cpu:0": 40.0})]) as t:
        pass
    client = MlflowClient()
    assert schema.TAG_SIGNATURE not in client.get_run(t.run_id).data.tags
    model, version = _register(client, t.run_id)
    result = check(model, version, SIGNED_POLICY, client=client, trusted_keys=TrustedKeys.from_paths([key_pair[1]]))
    assert [r.detail for r in result.failed] == [
        "not signed: the run has no green.signature tag (set MLFLOW_GREEN_SIGNING_KEY on the training host)"]


def test_a_bad_signing_key_fails_at_construction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SIGNING_KEY, str(tmp_path / "missing.key"))
    with pytest.raises(SignatureError, match="cannot read the signing key") as caught:
        mlflow_green.track()
    assert isinstance(caught.value, ConfigError)
    (tmp_path / "public.pem").write_bytes(generate_key_pair(tmp_path / "k")[1].read_bytes())
    monkeypatch.setenv(ENV_SIGNING_KEY, str(tmp_path / "public.pem"))
    with pytest.raises(SignatureError, match="is not an unencrypted PEM private key"):
        mlflow_green.track()


def test_require_signed_without_trusted_keys_is_a_configuration_error(mlflow_experiment: str) -> None:
    with mlflow_green.track(meters=[FakeMeter({"cpu:0": 40.0})]) as t:
        pass
    model, version = _register(MlflowClient(), t.run_id)
    with pytest.raises(SignatureError, match="sets require_signed = true, but no public key is trusted: set MLFLOW_GREEN_TRUSTED_KEYS"):
        check(model, version, SIGNED_POLICY, client=MlflowClient())


@pytest.mark.slow
def test_keras_fit_then_evaluate_is_signed_at_each_end(mlflow_experiment: str, signing: TrustedKeys, digits: tuple,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    keras = pytest.importorskip("keras")
    from mlflow_green.integrations.keras import GreenCallback

    x, y, xv, yv = digits
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    green = GreenCallback()
    model.fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=128, callbacks=[green], verbose=0)
    client = MlflowClient()
    run_id = green.session.run_id
    after_fit = client.get_run(run_id).data.tags[schema.TAG_SIGNATURE]
    assert verify_run(client, run_id, signing).ok
    model.evaluate(xv, yv, callbacks=[green], verbose=0)  # logs green/energy_test_kwh: signed again
    run = client.get_run(run_id)
    assert schema.phase_energy_key("test") in run.data.metrics
    assert run.data.tags[schema.TAG_SIGNATURE] != after_fit
    verification = verify_run(client, run_id, signing)
    assert verification.ok, verification.reason


@pytest.mark.slow
def test_lightning_fit_is_signed(mlflow_experiment: str, signing: TrustedKeys) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "integrations"))
    import lightning
    from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs

    from mlflow_green.integrations.lightning import GreenCallback

    train, val = loaders()
    green = GreenCallback()
    lightning.Trainer(max_epochs=2, callbacks=[green], **quiet_trainer_kwargs()).fit(digits_classifier(), train, val)
    verification = verify_run(MlflowClient(), green.session.run_id, signing)
    assert verification.ok, verification.reason


TRAINING = """
import sys, mlflow, mlflow_green
from mlflow_green.testing import FakeMeter
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("signed-outage")
with mlflow_green.track(meters=[FakeMeter({"cpu:0": 40.0, "ram:0": 5.0})]) as t:
    t.log_step(0, samples=10)
    print(t.run_id, flush=True)
    sys.stdin.readline()          # the test stops the server here
    t.log_step(1, samples=10)
"""


@pytest.mark.slow
def test_a_server_down_at_the_end_of_the_fit_gets_the_signature_with_the_spooled_values(
    tmp_path: Path, key_pair: tuple[Path, Path]
) -> None:
    spool = tmp_path / "spool"
    env = {**os.environ, ENV_SIGNING_KEY: str(key_pair[0]), "MLFLOW_GREEN_SPOOL_DIR": str(spool),
           "MLFLOW_GREEN_END_TIMEOUT_S": "1", "MLFLOW_GREEN_RETRY_MAX_S": "0.5",
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    with GreenServer(tmp_path / "server") as real, OutageRelay(real.url) as server:  # down(): refused, as when stopped
        training = subprocess.Popen([sys.executable, "-c", TRAINING, server.url], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, env=env)
        run_id = training.stdout.readline().strip()
        server.down()
        training.communicate("go\n", timeout=120)
        assert training.returncode == 0
        assert any(spool.rglob("*")), "the end of the fit was spooled"
        server.up()
        client = MlflowClient(server.url)
        assert schema.TAG_SIGNATURE not in client.get_run(run_id).data.tags
        synced = CliRunner().invoke(main, ["sync", "--tracking-uri", server.url], env={"MLFLOW_GREEN_SPOOL_DIR": str(spool)})
        assert synced.exit_code == 0, synced.output
        verification = verify_run(client, run_id, TrustedKeys.from_paths([key_pair[1]]))
        assert verification.ok, verification.reason
        assert client.get_run(run_id).data.metrics[schema.ENERGY_KWH] > 0
