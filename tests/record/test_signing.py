"""Signed measurements: keys, the manifest, verification of signed, unsigned, wrongly signed and tampered runs
(pure), and sign_run / verify_run / mlflow-green keys / mlflow-green verify on a real sqlite store."""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from mlflow_green.cli import main
from mlflow_green.errors import ConfigError, SignatureError
from mlflow_green.record import schema
from mlflow_green.record.run_signature import WriteLedger, apply_sign_entry, sign_run, verify_run
from mlflow_green.record.signing import (
    ENV_SIGNING_KEY,
    ENV_TRUSTED_KEYS,
    Manifest,
    SigningKey,
    TrustedKeys,
    generate_key_pair,
    verify,
)

METRICS = {schema.ENERGY_KWH: 0.25, schema.EMISSIONS_KG: 0.05, "val_accuracy": 0.9}
TAGS = {schema.TAG_ESTIMATED: "true", schema.TAG_METERS: "cpu:estimate", "mlflow.runName": "r"}
REPORT = b'{"schema_version": 1}'


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    trusted_private, trusted_public = generate_key_pair(tmp_path_factory.mktemp("trusted"))
    rogue_private, rogue_public = generate_key_pair(tmp_path_factory.mktemp("rogue"))
    return {"private": trusted_private, "public": trusted_public, "rogue": rogue_private, "rogue_public": rogue_public}


def _artifacts(manifest: Manifest, report: bytes | None = REPORT) -> dict[str, bytes]:
    files = {schema.SIGNED_MANIFEST_ARTIFACT: manifest.to_bytes()}
    if report is not None:
        files[schema.REPORT_ARTIFACT] = report
    return files


def _signed(keys: dict[str, Path], key: str = "private") -> tuple[dict[str, str], dict[str, bytes]]:
    manifest = Manifest.build("run1", METRICS, TAGS, REPORT)
    tags = {**TAGS, schema.TAG_SIGNATURE: SigningKey.from_file(keys[key]).sign(manifest)}
    return tags, _artifacts(manifest)


def test_generated_keys_private_is_0600_never_overwritten(tmp_path: Path) -> None:
    private, public = generate_key_pair(tmp_path / "k")
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    assert SigningKey.from_file(private).key_id == TrustedKeys.from_paths([public]).ids[0]
    with pytest.raises(SignatureError, match="already exists; keys are never overwritten"):
        generate_key_pair(tmp_path / "k")


def test_the_manifest_is_canonical_and_covers_only_green_values() -> None:
    manifest = Manifest.build("run1", METRICS, TAGS, REPORT)
    again = Manifest.build("run1", dict(reversed(list(METRICS.items()))), TAGS, REPORT)
    assert manifest.to_bytes() == again.to_bytes()
    assert set(manifest.metrics) == {schema.ENERGY_KWH, schema.EMISSIONS_KG}
    assert set(manifest.tags) == {schema.TAG_ESTIMATED, schema.TAG_METERS}
    assert Manifest.from_bytes(manifest.to_bytes()) == manifest


def test_a_signed_run_verifies(keys: dict[str, Path]) -> None:
    tags, files = _signed(keys)
    result = verify("run1", METRICS, tags, files.get, TrustedKeys.from_paths([keys["public"]]))
    assert result.ok and result.status == "signed" and result.key_id == SigningKey.from_file(keys["private"]).key_id


def test_an_unsigned_run_fails(keys: dict[str, Path]) -> None:
    result = verify("run1", METRICS, TAGS, {}.get, TrustedKeys.from_paths([keys["public"]]))
    assert not result.ok and result.status == "unsigned"
    assert result.reason.startswith("not signed: the run has no green.signature tag")


def test_a_run_signed_by_an_untrusted_key_fails(keys: dict[str, Path]) -> None:
    tags, files = _signed(keys, "rogue")
    trusted = TrustedKeys.from_paths([keys["public"]])
    result = verify("run1", METRICS, tags, files.get, trusted)
    assert result.status == "unknown key"
    assert result.reason == (f"signed by key {SigningKey.from_file(keys['rogue']).key_id}, which is not trusted "
                             f"(trusted: {trusted.ids[0]})")


@pytest.mark.parametrize(
    ("metrics", "tags", "report", "changes"),
    [
        ({**METRICS, schema.ENERGY_KWH: 1e-12}, TAGS, REPORT, ["green/energy_kwh: signed 0.25, now 1e-12"]),
        (METRICS, {**TAGS, schema.TAG_ESTIMATED: "false"}, REPORT, ["green.estimated: signed 'true', now 'false'"]),
        ({**METRICS, "green/accuracy_per_kwh": 9e9}, TAGS, REPORT, ["green/accuracy_per_kwh: 9e+09 was logged after signing"]),
        (METRICS, {k: v for k, v in TAGS.items() if k != schema.TAG_METERS}, REPORT,
         ["green.meters: removed after signing (signed 'cpu:estimate')"]),
        (METRICS, {**TAGS, "green.region": "FR"}, REPORT, ["green.region: 'FR' was set after signing"]),
        (METRICS, TAGS, b'{"schema_version": 2}', ["green/report.json: changed after signing"]),
        (METRICS, TAGS, None, ["green/report.json: removed after signing"]),
        ({**METRICS, "val_accuracy": 0.1}, {**TAGS, "mlflow.note": "x"}, REPORT, []),  # not green values
    ],
    ids=["metric-changed", "tag-changed", "metric-added", "tag-removed", "tag-added", "report-changed",
         "report-removed", "other-values"],
)
def test_every_change_after_signing_is_named(keys: dict[str, Path], metrics: dict, tags: dict, report: bytes | None,
                                             changes: list[str]) -> None:
    signed_tags, files = _signed(keys)
    now_tags = {**tags, schema.TAG_SIGNATURE: signed_tags[schema.TAG_SIGNATURE]}
    files = {**files, schema.REPORT_ARTIFACT: report} if report is not None else {schema.SIGNED_MANIFEST_ARTIFACT: files[schema.SIGNED_MANIFEST_ARTIFACT]}
    result = verify("run1", metrics, now_tags, files.get, TrustedKeys.from_paths([keys["public"]]))
    assert list(result.changes) == changes
    assert result.ok is (not changes)
    if changes:
        assert result.status == "tampered" and result.reason == "changed after signing: " + "; ".join(changes)


@pytest.mark.parametrize("attack", ["manifest-edited", "manifest-missing", "signature-garbled", "signature-bytes", "other-run"])
def test_a_forged_manifest_or_signature_fails(keys: dict[str, Path], attack: str) -> None:
    tags, files = _signed(keys)
    info = json.loads(tags[schema.TAG_SIGNATURE])
    run_id = "run1"
    if attack == "manifest-edited":
        forged = Manifest.build("run1", {**METRICS, schema.ENERGY_KWH: 1e-12}, TAGS, REPORT)
        files[schema.SIGNED_MANIFEST_ARTIFACT] = forged.to_bytes()
    elif attack == "manifest-missing":
        del files[schema.SIGNED_MANIFEST_ARTIFACT]
    elif attack == "signature-garbled":
        tags[schema.TAG_SIGNATURE] = "ed25519:not-json"
    elif attack == "signature-bytes":
        info["signature"] = info["signature"][::-1]
        tags[schema.TAG_SIGNATURE] = json.dumps(info)
    else:
        run_id = "run2"
    result = verify(run_id, METRICS, tags, files.get, TrustedKeys.from_paths([keys["public"]]))
    assert not result.ok
    expected = {
        "manifest-edited": "was changed after signing (the signature does not match)",
        "manifest-missing": "the signed manifest green/signed_manifest.json is missing",
        "signature-garbled": "green.signature is not an mlflow-green signature",
        "signature-bytes": "green.signature is not an mlflow-green signature",
        "other-run": "the signature was made for run run1, not this run (copied from another run)",
    }[attack]
    assert expected in result.reason


def test_unusable_keys_fail_at_load_naming_the_file(tmp_path: Path, keys: dict[str, Path]) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.key").write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
    (tmp_path / "rsa.pub").write_bytes(rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    encrypted = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw"))
    (tmp_path / "encrypted.key").write_bytes(encrypted)
    (tmp_path / "junk").write_text("hello")
    cases = [
        (lambda: SigningKey.from_file(tmp_path / "missing.key"), "cannot read the signing key"),
        (lambda: SigningKey.from_file(tmp_path / "junk"), "is not an unencrypted PEM private key"),
        (lambda: SigningKey.from_file(tmp_path / "encrypted.key"), "is not an unencrypted PEM private key"),
        (lambda: SigningKey.from_file(tmp_path / "rsa.key"), "mlflow-green signs with Ed25519 keys only"),
        (lambda: SigningKey.from_file(keys["public"]), "is not an unencrypted PEM private key"),
        (lambda: TrustedKeys.from_paths([tmp_path / "rsa.pub"]), "only Ed25519 public keys are trusted"),
        (lambda: TrustedKeys.from_paths([tmp_path / "missing.pub"]), "cannot read the trusted public key"),
        (lambda: SigningKey.from_env({ENV_SIGNING_KEY: str(tmp_path / "missing.key")}), "missing.key"),
    ]
    for call, words in cases:
        with pytest.raises(SignatureError) as caught:
            call()
        assert words in str(caught.value) and isinstance(caught.value, ConfigError)


def test_trusted_keys_from_the_environment_and_folders(tmp_path: Path, keys: dict[str, Path]) -> None:
    folder = tmp_path / "trusted"
    folder.mkdir()
    (folder / "a.pub").write_bytes(keys["public"].read_bytes())
    trusted = TrustedKeys.from_env({ENV_TRUSTED_KEYS: f"{folder}{os.pathsep}{keys['rogue_public']}"})
    assert len(trusted) == 2
    assert len(TrustedKeys.from_env({})) == 0 and SigningKey.from_env({}) is None


# --- on a real store -----------------------------------------------------------------------------------


@pytest.fixture()
def client(mlflow_experiment: str, tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri)


def _run(client: MlflowClient, experiment_id: str, energy_kwh: float = 0.25) -> str:
    run_id = client.create_run(experiment_id).info.run_id
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(schema.ENERGY_KWH, energy_kwh, now, 0)],
                     tags=[RunTag(schema.TAG_ESTIMATED, "true")])
    client.log_dict(run_id, {"schema_version": 1}, schema.REPORT_ARTIFACT)
    return run_id


def _verify_cli(tracking_uri: str, run_id: str, *extra: str, keys_value: str | None = None) -> tuple[int, str]:
    args = ["verify", "-r", run_id, "--tracking-uri", tracking_uri, *extra]
    env = {ENV_TRUSTED_KEYS: keys_value} if keys_value is not None else {}
    result = CliRunner().invoke(main, args, env=env)
    return result.exit_code, result.output


def test_sign_run_and_verify_on_a_real_store(client: MlflowClient, mlflow_experiment: str, tracking_uri: str,
                                             keys: dict[str, Path]) -> None:
    run_id = _run(client, mlflow_experiment)
    assert sign_run(client, run_id, SigningKey.from_file(keys["private"]))
    stored = client.get_run(run_id)
    assert json.loads(stored.data.tags[schema.TAG_SIGNATURE])["key_id"] == SigningKey.from_file(keys["private"]).key_id
    assert verify_run(client, run_id, TrustedKeys.from_paths([keys["public"]])).ok
    assert _verify_cli(tracking_uri, run_id, keys_value=str(keys["public"])) == (
        0, f"signed: run {run_id}: signed by key {SigningKey.from_file(keys['private']).key_id}; no signed value changed since\n")
    client.log_metric(run_id, schema.ENERGY_KWH, 1e-12, step=5)
    client.set_tag(run_id, schema.TAG_ESTIMATED, "false")
    code, output = _verify_cli(tracking_uri, run_id, "--trusted-keys", str(keys["public"]))
    assert code == 1
    assert output.splitlines() == [f"tampered: run {run_id}: changed after signing:",
                                   "  green/energy_kwh: signed 0.25, now 1e-12",
                                   "  green.estimated: signed 'true', now 'false'"]
    code, output = _verify_cli(tracking_uri, run_id, "--format", "json", keys_value=str(keys["public"]))
    assert code == 1 and json.loads(output)["changes"] == ["green/energy_kwh: signed 0.25, now 1e-12",
                                                           "green.estimated: signed 'true', now 'false'"]


def test_verify_cli_exit_codes(client: MlflowClient, mlflow_experiment: str, tracking_uri: str,
                               keys: dict[str, Path]) -> None:
    run_id = _run(client, mlflow_experiment)
    assert _verify_cli(tracking_uri, run_id, keys_value=str(keys["public"]))[0] == 1  # unsigned
    code, output = _verify_cli(tracking_uri, run_id, keys_value="")
    assert code == 2 and "no trusted public key: set MLFLOW_GREEN_TRUSTED_KEYS" in output
    code, output = _verify_cli(tracking_uri, uuid.uuid4().hex, keys_value=str(keys["public"]))
    assert code == 2 and "Error:" in output


def test_a_value_changed_before_the_signature_is_not_signed(client: MlflowClient, mlflow_experiment: str,
                                                            keys: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    """The spooled sign write checks that what this training logged is what the server holds."""
    run_id = _run(client, mlflow_experiment, energy_kwh=0.25)
    ledger = WriteLedger()
    ledger.observe({"op": "metrics", "metrics": [[schema.ENERGY_KWH, 0.25, 1, 0]]})
    ledger.observe({"op": "tags", "tags": {schema.TAG_ESTIMATED: "true"}})
    client.log_metric(run_id, schema.ENERGY_KWH, 1e-12, step=9)  # someone else, before the signature
    apply_sign_entry(client, run_id, ledger.sign_entry(SigningKey.from_file(keys["private"])))
    assert schema.TAG_SIGNATURE not in client.get_run(run_id).data.tags
    assert "green/energy_kwh is 1e-12 on the server, but this training logged 0.25" in caplog.text


def test_keys_generate_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["keys", "generate", str(tmp_path / "keys")])
    assert result.exit_code == 0, result.output
    key_id = SigningKey.from_file(tmp_path / "keys" / "green-signing.key").key_id
    assert result.output.splitlines()[0] == f"Key id: {key_id}"
    assert f"export {ENV_SIGNING_KEY}={tmp_path / 'keys' / 'green-signing.key'}" in result.output
    again = CliRunner().invoke(main, ["keys", "generate", str(tmp_path / "keys")])
    assert again.exit_code == 2 and "never overwritten" in again.output


def test_signing_again_refuses_values_changed_by_others_since_the_first_signature(
    client: MlflowClient, mlflow_experiment: str, keys: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A fit is signed, then an evaluation logs more and signs again: only the evaluation's own values may have changed."""
    key = SigningKey.from_file(keys["private"])
    run_id = _run(client, mlflow_experiment)
    assert sign_run(client, run_id, key)
    evaluation = {"metrics": {"green/energy_test_kwh": 0.01}, "tags": {}, "report_digest": None}
    client.log_metric(run_id, "green/energy_test_kwh", 0.01)
    assert sign_run(client, run_id, key, expected=evaluation)  # the evaluation's own value: signed again
    client.log_metric(run_id, schema.ENERGY_KWH, 1e-12, step=9)  # someone else, between the two signatures
    client.log_metric(run_id, "green/energy_test_kwh", 0.02, step=1)
    assert not sign_run(client, run_id, key, expected={**evaluation, "metrics": {"green/energy_test_kwh": 0.02}})
    assert "green/energy_kwh: signed 0.25, now 1e-12" in caplog.text
    result = verify_run(client, run_id, TrustedKeys.from_paths([keys["public"]]))
    assert not result.ok and "green/energy_kwh" in result.changed_keys
