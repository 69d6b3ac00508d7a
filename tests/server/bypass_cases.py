"""The gate bypass and forgery set, as functions run against a real `mlflow server --app-name green`.

Used by tests/server/test_gate_bypass.py (sqlite) and tests/e2e/test_gate_bypass_postgres.py
(PostgreSQL). Each case gets a :class:`Setup`: the server, an HTTP client (what any user has),
a direct client on the server's database (a writer that bypasses the HTTP hooks, e.g. a tag
written before the policy existed), an experiment, and key files.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from mlflow_green.cli import main
from mlflow_green.record import schema
from mlflow_green.record.run_signature import sign_run
from mlflow_green.record.signing import ENV_TRUSTED_KEYS, SigningKey, generate_key_pair
from mlflow_green.testing.registry import register_version
from mlflow_green.testing.server import GreenServer

POLICY = """
[aliases.champion]
max_energy_kwh = 0.5
max_emissions_kg = 1
measured_only = true
beat_current_by_percent = 5

[aliases.signed]
max_energy_kwh = 0.5
measured_only = true
require_signed = true

[stages.Production]
max_energy_kwh = 0.5
beat_current_by_percent = 5
"""
PROMPT_TAG = "mlflow.prompt.is_prompt"
GOOD = {schema.ENERGY_KWH: 0.2, schema.DURATION_S: 60.0, schema.EMISSIONS_KG: 0.05, schema.QUALITY: 0.9,
        schema.ACCURACY_PER_KWH: 4500.0}
WASTEFUL = {**GOOD, schema.ENERGY_KWH: 2.0, schema.ACCURACY_PER_KWH: 450.0}
MEASURED = {schema.TAG_ESTIMATED: "false"}


@dataclass
class Setup:
    server: GreenServer
    client: MlflowClient
    direct: MlflowClient
    experiment_id: str
    trusted_key: SigningKey
    rogue_key: SigningKey
    trusted_pub: Path

    def model(self) -> str:
        name = f"bypass-{uuid.uuid4().hex[:8]}"
        self.client.create_registered_model(name)
        return name

    def version(self, model: str, metrics: Mapping[str, float], tags: Mapping[str, str] = MEASURED) -> str:
        return register_version(self.client, self.experiment_id, model, metrics, tags)

    def run_of(self, model: str, version: str) -> str:
        return str(self.client.get_model_version(model, version).run_id)


@contextmanager
def green_server(workdir: Path, backend_store_uri: str | None = None) -> Iterator[Setup]:
    """A green server enforcing :data:`POLICY`, trusting one of two fresh key pairs."""
    trusted_private, trusted_pub = generate_key_pair(workdir / "trusted")
    rogue_private, _ = generate_key_pair(workdir / "rogue")
    policy = workdir / "green-policy.toml"
    policy.write_text(POLICY)
    env = {"MLFLOW_GREEN_GATE_POLICY": str(policy), ENV_TRUSTED_KEYS: str(trusted_pub)}
    with GreenServer(workdir, backend_store_uri=backend_store_uri, env=env) as server:
        client = MlflowClient(server.url)
        yield Setup(server, client, MlflowClient(server.backend_store_uri), client.create_experiment(f"bypass-{uuid.uuid4().hex[:6]}"),
                    SigningKey.from_file(trusted_private), SigningKey.from_file(rogue_private), trusted_pub)


def post(url: str, body: dict, method: str = "POST") -> tuple[int, dict, Mapping[str, str]]:
    """A raw REST request (MlflowClient hides what it thinks are prompts; an attacker does not use it)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}"), response.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers


def refused(call: Callable[[], object], *words: str) -> str:
    """Run an MlflowClient call that the server must refuse with 403; returns its message."""
    with pytest.raises(MlflowException) as caught:
        call()
    assert caught.value.error_code == "PERMISSION_DENIED", caught.value.message
    for word in words:
        assert word in caught.value.message, caught.value.message
    return caught.value.message


def gate_tags(client: MlflowClient, model: str, version: str, timeout_s: float = 10.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        tags = client.get_model_version(model, version).tags
        if schema.TAG_GATE in tags or time.monotonic() > deadline:
            return tags
        time.sleep(0.05)


def raw_aliases(s: Setup, model: str) -> dict[str, str]:
    with urllib.request.urlopen(f"{s.server.url}/api/2.0/mlflow/registered-models/get?name={model}", timeout=30) as r:
        body = json.loads(r.read())
    return {a["alias"]: a["version"] for a in body["registered_model"].get("aliases", [])}


def raw_tags(s: Setup, model: str, version: str) -> dict[str, str]:
    url = f"{s.server.url}/api/2.0/mlflow/model-versions/get?name={model}&version={version}"
    with urllib.request.urlopen(url, timeout=30) as r:
        body = json.loads(r.read())
    return {t["key"]: t["value"] for t in body["model_version"].get("tags", [])}


def transition(client: MlflowClient, model: str, version: str, stage: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(model, version, stage)


def stage_of(client: MlflowClient, model: str, version: str) -> str:
    return client.get_model_version(model, version).current_stage


# --- 1. no client-settable tag switches a gate off ------------------------------------------------


def case_prompt_tag_then_alias_then_untag(s: Setup) -> None:
    """The reported sequence: tag the failing version a prompt, set @champion, delete the tag."""
    model = s.model()
    failing = s.version(model, WASTEFUL)
    refused(lambda: s.client.set_model_version_tag(model, failing, PROMPT_TAG, "true"), PROMPT_TAG, "cannot be set")
    refused(lambda: s.client.set_registered_model_tag(model, PROMPT_TAG, "true"), PROMPT_TAG)
    # Even when the tags got there some other way (written to the database directly), they prove nothing.
    s.direct.set_model_version_tag(model, failing, PROMPT_TAG, "true")
    s.direct.set_registered_model_tag(model, PROMPT_TAG, "true")
    status, body, headers = post(f"{s.server.url}/api/2.0/mlflow/registered-models/alias",
                                 {"name": model, "alias": "champion", "version": failing})
    assert status == 403 and headers["X-MLflow-Green-Gate"] == "failed", body
    assert "max_energy_kwh: 2 kWh > limit 500 Wh" in body["message"]
    status, body, _ = post(f"{s.server.url}/api/2.0/mlflow/model-versions/delete-tag",
                           {"name": model, "version": failing, "key": PROMPT_TAG}, method="DELETE")
    assert status == 403 and "cannot be deleted" in body["message"], body
    s.direct._get_registry_client().store.delete_model_version_tag(model, failing, PROMPT_TAG)
    assert "champion" not in raw_aliases(s, model)
    time.sleep(0.5)  # the gate tags are written just after the answer
    assert raw_tags(s, model, failing)[schema.TAG_GATE] == "failed"


def case_prompt_tag_then_production_then_untag(s: Setup) -> None:
    model = s.model()
    failing = s.version(model, WASTEFUL)
    refused(lambda: s.client.set_model_version_tag(model, failing, PROMPT_TAG, "true"), PROMPT_TAG)
    s.direct.set_model_version_tag(model, failing, PROMPT_TAG, "true")
    s.direct.set_registered_model_tag(model, PROMPT_TAG, "true")
    status, body, _ = post(f"{s.server.url}/api/2.0/mlflow/model-versions/transition-stage",
                           {"name": model, "version": failing, "stage": "Production", "archive_existing_versions": False})
    assert status == 403 and "refused transition to stage 'Production'" in body["message"], body
    assert "max_energy_kwh: 2 kWh > limit 500 Wh" in body["message"]
    s.direct._get_registry_client().store.delete_model_version_tag(model, failing, PROMPT_TAG)
    s.direct._get_registry_client().store.delete_registered_model_tag(model, PROMPT_TAG)
    assert stage_of(s.client, model, failing) == "None"


def case_a_real_model_version_inside_a_prompt_is_gated(s: Setup) -> None:
    """A prompt (registered by MLflow) holding a real model version: that version is a model, gated."""
    name = f"prompt-{uuid.uuid4().hex[:8]}"
    s.client.register_prompt(name, "Summarise {{text}}.")
    run_id = s.client.create_run(s.experiment_id).info.run_id
    s.client.log_batch(run_id, metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in WASTEFUL.items()])
    version = s.direct.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version
    # MlflowClient refuses prompts client-side; the REST API is what an attacker uses
    status, body, _ = post(f"{s.server.url}/api/2.0/mlflow/registered-models/alias",
                           {"name": name, "alias": "champion", "version": str(version)})
    assert status == 403 and "max_energy_kwh" in body["message"], body


def case_real_prompts_are_not_gated(s: Setup) -> None:
    name = f"prompt-{uuid.uuid4().hex[:8]}"
    prompt = s.client.register_prompt(name, "Summarise {{text}} in one line.")
    status, _, headers = post(f"{s.server.url}/api/2.0/mlflow/registered-models/alias",
                              {"name": name, "alias": "champion", "version": str(prompt.version)})
    assert status == 200 and headers["X-MLflow-Green-Gate"] == "skipped (prompt)"
    assert s.client.get_prompt_version_by_alias(name, "champion").version == prompt.version


def case_gate_tags_are_written_by_the_gate_only(s: Setup) -> None:
    model = s.model()
    failing = s.version(model, WASTEFUL)
    refused(lambda: s.client.set_model_version_tag(model, failing, schema.TAG_GATE, "passed"), "green.gate")
    refused(lambda: s.client.set_model_version_tag(model, failing, "Green.Gate", "passed"), "Green.Gate")
    refused(lambda: s.client.set_registered_model_tag(model, schema.gate_holder_tag("alias", "champion"), "{}"))
    refused(lambda: s.client.delete_registered_model_tag(model, schema.gate_holder_tag("alias", "champion")))
    refused(lambda: s.client.create_model_version(model, "s3://b/m", tags={schema.TAG_GATE: "passed"}), "green.gate")
    refused(lambda: s.client.create_registered_model(f"pre-{uuid.uuid4().hex[:6]}", tags={schema.TAG_GATE_REASONS: "x"}))
    s.client.set_model_version_tag(model, failing, "team", "vision")  # other tags are untouched


# --- 2. impossible numbers ---------------------------------------------------------------------------


def case_negative_and_zero_energy_are_refused(s: Setup) -> None:
    model = s.model()
    for energy, words in ((-5.0, "green/energy_kwh = -5 kWh is impossible (negative energy)"),
                          (0.0, "green/energy_kwh = 0 Wh is impossible for a run that did work (green/duration_s = 60 s)")):
        version = s.version(model, {**GOOD, schema.ENERGY_KWH: energy})
        refused(lambda v=version: s.client.set_registered_model_alias(model, "champion", v), words)
    nan_version = s.version(model, {**GOOD, schema.EMISSIONS_KG: math.nan})
    refused(lambda: s.client.set_registered_model_alias(model, "champion", nan_version), "green/emissions_kg is NaN")
    assert "champion" not in s.client.get_registered_model(model).aliases


# --- 3. the gate remembers the last holder -----------------------------------------------------------


def case_alias_deleted_then_set_again(s: Setup) -> None:
    model = s.model()
    first = s.version(model, GOOD)
    s.client.set_registered_model_alias(model, "champion", first)
    holder = schema.gate_holder_tag("alias", "champion")
    deadline = time.monotonic() + 10
    while holder not in s.client.get_registered_model(model).tags and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads(s.client.get_registered_model(model).tags[holder])["version"] == first
    s.client.delete_registered_model_alias(model, "champion")
    barely = s.version(model, {**GOOD, schema.ACCURACY_PER_KWH: 4600.0})
    refused(lambda: s.client.set_registered_model_alias(model, "champion", barely),
            f"beat_current_by_percent: 4,600 per kWh < 4,725 per kWh (version {first}, which held alias champion last "
            "(the alias was removed since): 4,500 per kWh, + 5 %)")
    s.client.set_registered_model_alias(model, "champion", first)  # the last holder itself may come back
    s.client.delete_registered_model_alias(model, "champion")
    clearly = s.version(model, {**GOOD, schema.ACCURACY_PER_KWH: 5000.0})
    s.client.set_registered_model_alias(model, "champion", clearly)


def case_stage_emptied_then_filled(s: Setup) -> None:
    model = s.model()
    first = s.version(model, GOOD)
    transition(s.client, model, first, "Production")
    time.sleep(0.3)  # the holder tag is written just after the answer
    transition(s.client, model, first, "Archived")
    worse = s.version(model, {**GOOD, schema.ACCURACY_PER_KWH: 3000.0})
    refused(lambda: transition(s.client, model, worse, "Production"),
            f"version {first}, which held stage Production last (no version is in that stage now)")


def case_nan_on_the_holder_is_a_failure_to_compare(s: Setup) -> None:
    model = s.model()
    first = s.version(model, GOOD)
    s.client.set_registered_model_alias(model, "champion", first)
    s.client.log_metric(s.run_of(model, first), schema.ACCURACY_PER_KWH, math.nan, step=10)
    better = s.version(model, {**GOOD, schema.ACCURACY_PER_KWH: 9000.0})
    refused(lambda: s.client.set_registered_model_alias(model, "champion", better),
            f"cannot compare with version {first} (holds alias champion): green/accuracy_per_kwh is NaN")
    assert str(s.client.get_registered_model(model).aliases["champion"]) == first


# --- 5. forged measurements and signatures -----------------------------------------------------------


def _signed_version(s: Setup, model: str, metrics: Mapping[str, float], tags: Mapping[str, str] = MEASURED,
                    key: SigningKey | None = None) -> tuple[str, str]:
    version = s.version(model, metrics, tags)
    run_id = s.run_of(model, version)
    s.client.log_dict(run_id, {"schema_version": 1, "totals": {"energy_kwh": metrics[schema.ENERGY_KWH]}}, schema.REPORT_ARTIFACT)
    assert sign_run(s.client, run_id, key or s.trusted_key)
    return version, run_id


def _download(s: Setup, run_id: str, path: str) -> str:
    folder = tempfile.mkdtemp(dir=s.server.workdir)
    return Path(s.client.download_artifacts(run_id, path, folder)).read_text()


def _verify(s: Setup, run_id: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["verify", "-r", run_id, "--tracking-uri", s.server.url,
                                       "--trusted-keys", str(s.trusted_pub)])
    return result.exit_code, result.output


def case_signed_unsigned_and_wrongly_signed(s: Setup) -> None:
    model = s.model()
    signed, signed_run = _signed_version(s, model, GOOD)
    s.client.set_registered_model_alias(model, "signed", signed)
    assert gate_tags(s.client, model, signed)[schema.TAG_GATE] == "passed"
    assert _verify(s, signed_run)[0] == 0
    unsigned = s.version(model, GOOD)
    refused(lambda: s.client.set_registered_model_alias(model, "signed", unsigned),
            "require_signed: not signed: the run has no green.signature tag")
    rogue, rogue_run = _signed_version(s, model, GOOD, key=s.rogue_key)
    refused(lambda: s.client.set_registered_model_alias(model, "signed", rogue),
            f"require_signed: signed by key {s.rogue_key.key_id}, which is not trusted")
    code, output = _verify(s, rogue_run)
    assert code == 1 and "unknown key" in output


def case_forged_values_on_a_refused_run(s: Setup) -> None:
    """The reported forgery: the gate refuses a measured run; the values are rewritten; promotion must still fail."""
    model = s.model()
    version, run_id = _signed_version(s, model, WASTEFUL, {schema.TAG_ESTIMATED: "true"})
    refused(lambda: s.client.set_registered_model_alias(model, "signed", version), "max_energy_kwh", "measured_only")
    s.client.log_metric(run_id, schema.ENERGY_KWH, 1e-12, step=99)
    s.client.set_tag(run_id, schema.TAG_ESTIMATED, "false")
    message = refused(lambda: s.client.set_registered_model_alias(model, "signed", version), "require_signed: changed after signing")
    assert "green.estimated: signed 'true', now 'false'" in message
    assert "green/energy_kwh: signed 2, now 1e-12" in message
    code, output = _verify(s, run_id)
    assert code == 1 and "green/energy_kwh: signed 2, now 1e-12" in output


def case_tampered_manifest_copied_signature_and_changed_report(s: Setup) -> None:
    model = s.model()
    version, run_id = _signed_version(s, model, WASTEFUL)
    # rewrite the signed manifest to match forged values: the signature no longer verifies
    manifest = json.loads(_download(s, run_id, schema.SIGNED_MANIFEST_ARTIFACT))
    manifest["metrics"][schema.ENERGY_KWH] = 1e-12
    s.client.log_metric(run_id, schema.ENERGY_KWH, 1e-12, step=99)
    s.client.log_text(run_id, json.dumps(manifest, sort_keys=True, separators=(",", ":")), schema.SIGNED_MANIFEST_ARTIFACT)
    refused(lambda: s.client.set_registered_model_alias(model, "signed", version),
            "green/signed_manifest.json or green.signature was changed after signing (the signature does not match)")
    # copy a good run's signature and manifest onto a forged run
    good, good_run = _signed_version(s, model, GOOD)
    forged = s.version(model, GOOD)
    forged_run = s.run_of(model, forged)
    s.client.log_text(forged_run, _download(s, good_run, schema.SIGNED_MANIFEST_ARTIFACT), schema.SIGNED_MANIFEST_ARTIFACT)
    s.client.set_tag(forged_run, schema.TAG_SIGNATURE, s.client.get_run(good_run).data.tags[schema.TAG_SIGNATURE])
    refused(lambda: s.client.set_registered_model_alias(model, "signed", forged),
            f"the signature was made for run {good_run}, not this run (copied from another run)")
    # change the report after signing
    s.client.log_dict(good_run, {"schema_version": 1, "totals": {"energy_kwh": 1e-12}}, schema.REPORT_ARTIFACT)
    refused(lambda: s.client.set_registered_model_alias(model, "signed", good),
            "changed after signing: green/report.json: changed after signing")


# --- 6. /green/api on this backend ------------------------------------------------------------------


def case_api_requests_on_this_backend(s: Setup) -> None:
    """The reported API problems, on this server's database (PostgreSQL leaked psycopg's error and the SQL)."""
    model = f"it's a \"quoted\" model {uuid.uuid4().hex[:6]}"
    version = s.version(model, GOOD)

    def get(path: str, **params: str) -> tuple[int, dict]:
        url = f"{s.server.url}/green/api/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    status, body = get("rank", experiment_ids=",".join([s.experiment_id] * 10_000))
    assert status == 200 and [e["id"] for e in body["experiments"]] == [s.experiment_id]
    status, body = get("rank", experiment_ids=",".join(str(10**6 + i) for i in range(101)))
    assert status == 400 and "the cap is 100 per request" in body["error"]
    for bad in ("attributes.start_time > 1" + "0" * 59, "params.x = 'a\x00b'", "metrics.acc > 1e999"):
        status, body = get("rank", experiment_ids=s.experiment_id, filter=bad)
        assert status == 400 and body["type"] == "RankRequestError", body
        assert not any(word in body["error"] for word in ("SQL", "psycopg", "SELECT", "sqlite")), body
    status, body = get(f"models/{urllib.parse.quote(model, safe='')}/rank")
    assert status == 200 and [r["model_version"] for r in body["rows"]] == [version]


CASES: dict[str, Callable[[Setup], None]] = {
    name.removeprefix("case_"): function for name, function in globals().items() if name.startswith("case_")
}
