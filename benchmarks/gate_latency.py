"""The time the server-side gate check adds to an alias request (budget: ≤ 50 ms).

Starts two real servers on tmp sqlite stores: ``mlflow server --app-name green`` with a gate
policy in ``MLFLOW_GREEN_GATE_POLICY``, and a plain ``mlflow server`` as the baseline. On each,
registers N+warmup versions of one model (each source run logs green metrics that pass the
policy), then sets the alias ``champion`` to each new version in turn — alternating between the
two servers, one request each, so drift in machine load hits both alike — over one keep-alive
HTTP connection per server. Every request is a real promotion: a new version that is checked
against the whole ``champion`` policy, including ``beat_current_by_percent`` (which also reads
the current champion and its run), and gets its ``green.gate*`` tags (written just after the
answer, off the request path).

Reported: median request time on each server, the added time (difference of medians, and the
median of the paired differences), and the check's own time inside the server (the
``X-MLflow-Green-Gate-Ms`` header). MLflow's job-runner processes are off on both servers
(``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``; ``--with-jobs`` keeps them) to cut noise on
small machines.

Usage::

    python benchmarks/gate_latency.py [--requests 50] [--warmup 5] [--pause-s 0.1] [--signed]

``--signed`` adds ``require_signed = true``: each version's run is signed first, and every check
also reads ``green/signed_manifest.json`` and ``green/report.json`` and verifies the signature.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import time
import urllib.parse
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from mlflow_green.record import schema
from mlflow_green.record.run_signature import sign_run
from mlflow_green.record.signing import ENV_TRUSTED_KEYS, SigningKey, generate_key_pair
from mlflow_green.testing.server import GreenServer

BUDGET_MS = 50.0
MODEL = "gate-latency"
POLICY = """
[default]
measured_only = true

[aliases.champion]
max_energy_kwh = 0.5
max_emissions_kg = 0.2
min_accuracy_per_kwh = 1000
max_model_size_bytes = 50_000_000
beat_current_by_percent = 0
"""


SIGNED = "require_signed = true\n"


def _register_versions(client: MlflowClient, count: int, key: SigningKey | None = None) -> list[str]:
    experiment_id = client.create_experiment("gate-latency")
    client.create_registered_model(MODEL)
    versions = []
    for i in range(count):
        run_id = client.create_run(experiment_id).info.run_id
        metrics = {
            schema.ENERGY_KWH: 0.2,
            schema.EMISSIONS_KG: 0.05,
            schema.ACCURACY_PER_KWH: 4000.0 + i,  # each beats the last
            schema.MODEL_SIZE_BYTES: 1_000_000.0,
        }
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
            tags=[RunTag(schema.TAG_ESTIMATED, "false")],
        )
        if key is not None:  # a report and the signature, as a training host with a signing key writes them
            client.log_dict(run_id, {"schema_version": 1, "totals": metrics}, schema.REPORT_ARTIFACT)
            sign_run(client, run_id, key)
        versions.append(str(client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id).version))
    return versions


class _Alias:
    """``POST /api/2.0/mlflow/registered-models/alias`` over one keep-alive connection."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlparse(url)
        self.connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=60)

    def set(self, version: str) -> tuple[float, float | None]:
        body = json.dumps({"name": MODEL, "alias": "champion", "version": version})
        started = time.perf_counter()
        self.connection.request(
            "POST", "/api/2.0/mlflow/registered-models/alias", body=body, headers={"Content-Type": "application/json"}
        )
        response = self.connection.getresponse()
        payload = response.read()
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        if response.status != 200:
            raise RuntimeError(f"alias request failed: {response.status} {payload[:500]!r}")
        gate_ms = response.getheader("X-MLflow-Green-Gate-Ms")
        return elapsed_ms, float(gate_ms) if gate_ms is not None else None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50, help="measured alias requests per server")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured requests per server first")
    parser.add_argument("--pause-s", type=float, default=0.1, help="pause between request pairs")
    parser.add_argument("--with-jobs", action="store_true", help="keep MLflow's job-runner processes on")
    parser.add_argument("--signed", action="store_true",
                        help="add require_signed to the policy: every check also verifies the run's signature")
    args = parser.parse_args()

    quiet = {} if args.with_jobs else {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    total = args.requests + args.warmup
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "green-policy.toml"
        policy.write_text(POLICY + (SIGNED if args.signed else ""))
        env = {"MLFLOW_GREEN_GATE_POLICY": str(policy), **quiet}
        key = None
        if args.signed:
            private, public = generate_key_pair(Path(tmp) / "keys")
            key, env[ENV_TRUSTED_KEYS] = SigningKey.from_file(private), str(public)
        green = GreenServer(Path(tmp) / "green", env=env)
        plain = GreenServer(Path(tmp) / "plain", env=quiet, app_name=None)
        with green, plain:
            green_versions = _register_versions(MlflowClient(green.url), total, key)
            plain_versions = _register_versions(MlflowClient(plain.url), total, key)
            green_alias, plain_alias = _Alias(green.url), _Alias(plain.url)
            with_gate, without, paired, inside = [], [], [], []
            for i in range(total):
                order = [(green_alias, green_versions[i]), (plain_alias, plain_versions[i])]
                if i % 2:
                    order.reverse()  # neither server always goes first
                timings = {}
                for alias, version in order:
                    timings[alias] = alias.set(version)
                if i >= args.warmup:
                    (g_ms, gate_ms), (p_ms, _) = timings[green_alias], timings[plain_alias]
                    with_gate.append(g_ms)
                    without.append(p_ms)
                    paired.append(g_ms - p_ms)
                    if gate_ms is not None:
                        inside.append(gate_ms)
                time.sleep(args.pause_s)
            champion = MlflowClient(green.url).get_model_version_by_alias(MODEL, "champion")
            assert str(champion.version) == green_versions[-1], "the last version should be champion"

    added = statistics.median(with_gate) - statistics.median(without)
    what = "signed runs, require_signed verified on each" if args.signed else "unsigned runs"
    print(f"alias request, median of {args.requests} (after {args.warmup} warm-up), one new version each; {what}")
    print(f"  plain mlflow server                 {statistics.median(without):7.1f} ms  (p95 {_percentile(without, 0.95):.1f})")
    print(f"  green app with gate policy          {statistics.median(with_gate):7.1f} ms  (p95 {_percentile(with_gate, 0.95):.1f})")
    print(f"  added (difference of medians)       {added:7.1f} ms")
    print(f"  added (median of paired deltas)     {statistics.median(paired):7.1f} ms")
    if inside:
        print(
            f"  gate check inside the server        {statistics.median(inside):7.1f} ms  "
            f"(p95 {_percentile(inside, 0.95):.1f}, max {max(inside):.1f})"
        )
    verdict = "within budget" if max(added, statistics.median(paired)) <= BUDGET_MS else "OVER BUDGET"
    print(f"  budget ≤ {BUDGET_MS:g} ms added: {verdict}")


if __name__ == "__main__":
    main()
