"""Signing a run's green values at the end of a fit, and verifying them: the MLflow I/O of :mod:`~mlflow_green.record.signing`.

On the training host, with ``MLFLOW_GREEN_SIGNING_KEY`` set, the recorder queues a ``sign``
write after the fit's last metrics, tags and report (:meth:`WriteLedger.sign_entry`). It is sent
in order with the other writes — so it runs once they all reached the server, even when the
server was down at the end of the fit and the writes were spooled and replayed later (by the
training process or by ``mlflow-green sync``). Sending it (:func:`apply_sign_entry`):

1. reads the run back from the server and checks that every value *this* training wrote is
   still the run's latest (a value changed by someone else in between is refused: the run is
   not signed, and a warning names the value);
2. builds the manifest of every ``green/`` metric, ``green.`` tag and ``green/report.json``,
   signs it, and writes ``green/signed_manifest.json`` then the ``green.signature`` tag.

The spooled entry holds the key's *path*, never the key.

Example::

    key = SigningKey.from_file("/secure/green-signing.key")
    sign_run(MlflowClient(), run_id, key)                       # what the sign write does
    verify_run(MlflowClient(), run_id, TrustedKeys.from_env())  # what mlflow-green verify does
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlflow_green.errors import ArgumentTypeError, SignatureError
from mlflow_green.record import schema
from mlflow_green.record.run_artifacts import read_artifact, read_artifacts
from mlflow_green.record.signing import SIGNED_ARTIFACTS, Manifest, SigningKey, TrustedKeys, Verification, verify

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

logger = logging.getLogger(__name__)

SIGN_OP = "sign"


def report_digest(report: Any) -> str:
    """SHA-256 of a report's canonical JSON (so the report read back can be compared with the one written)."""
    text = json.dumps(report, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class WriteLedger:
    """What one writer sent to a run: each metric's latest point, each tag, the report's digest.

    A metric's latest point is MLflow's: the greatest ``(step, timestamp, value)``.

    Example:
        >>> ledger = WriteLedger()
        >>> ledger.observe({"op": "metrics", "metrics": [["green/energy_kwh", 0.1, 1000, 0], ["green/energy_kwh", 0.3, 900, 1]]})
        >>> ledger.observe({"op": "tags", "tags": {"green.estimated": "false"}})
        >>> ledger.expected()["metrics"], ledger.expected()["tags"]
        ({'green/energy_kwh': 0.3}, {'green.estimated': 'false'})
    """

    def __init__(self) -> None:
        self._metrics: dict[str, tuple[int, int, float]] = {}
        self._tags: dict[str, str] = {}
        self._artifacts: dict[str, Any] = {}  # artifact file -> the report written (its digest when signing)

    def observe(self, entry: Mapping[str, Any]) -> None:
        """Record one write (a spool entry: ``metrics``, ``tags`` or ``report``; others are ignored)."""
        kind = entry.get("op")
        if kind == "metrics":
            latest, prefix = self._metrics, schema.METRIC_PREFIX
            for key, value, timestamp_ms, step in entry.get("metrics", ()):
                if key.startswith(prefix):
                    point, known = (int(step), int(timestamp_ms), float(value)), latest.get(key)
                    if known is None or point > known:
                        latest[key] = point
        elif kind == "tags":
            self._tags.update({k: str(v) for k, v in entry.get("tags", {}).items() if k.startswith(schema.TAG_PREFIX)})
        elif kind == "report" and entry.get("artifact_file", schema.REPORT_ARTIFACT) in SIGNED_ARTIFACTS:
            # kept as written (the entry's own copy), digested only when a signature asks for it
            self._artifacts[entry.get("artifact_file", schema.REPORT_ARTIFACT)] = entry.get("report")

    def expected(self) -> dict[str, Any]:
        """The values to find on the server before signing (``report_digest``: ``green/report.json``'s;
        ``artifact_digests``: every signed artifact this writer wrote)."""
        digests = {name: report_digest(report) for name, report in self._artifacts.items()}
        return {
            "metrics": {key: point[2] for key, point in self._metrics.items()},
            "tags": dict(self._tags),
            "report_digest": digests.get(schema.REPORT_ARTIFACT),
            "artifact_digests": digests,
        }

    def sign_entry(self, key: SigningKey) -> dict[str, Any]:
        """The spool entry asking to sign the run once every write before it was sent."""
        return {"op": SIGN_OP, "key_path": key.path, "key_id": key.key_id, "expected": self.expected()}


def _check_client(client: Any) -> None:
    if not all(hasattr(client, name) for name in ("get_run", "list_artifacts", "download_artifacts")):
        raise ArgumentTypeError("client", "an mlflow.MlflowClient", client)


def _expected_digests(expected: Mapping[str, Any]) -> dict[str, str]:
    digests = dict(expected.get("artifact_digests") or {})
    if expected.get("report_digest") is not None:  # spooled by an earlier version: the report only
        digests.setdefault(schema.REPORT_ARTIFACT, expected["report_digest"])
    return digests


def _mismatches(run: Run, artifacts: Mapping[str, bytes | None], expected: Mapping[str, Any], writer: str) -> list[str]:
    problems = []
    for key, value in (expected.get("metrics") or {}).items():
        now = run.data.metrics.get(key)
        if now is None or not (now == value or (math.isnan(now) and math.isnan(value))):
            problems.append(f"{key} is {now!r} on the server, but {writer} logged {value!r}")
    for key, value in (expected.get("tags") or {}).items():
        if run.data.tags.get(key) != value:
            problems.append(f"{key} is {run.data.tags.get(key)!r} on the server, but {writer} set {value!r}")
    for path, digest in _expected_digests(expected).items():
        data = artifacts.get(path)
        try:
            stored = report_digest(json.loads(data)) if data is not None else None
        except ValueError:
            stored = None
        if stored != digest:
            problems.append(f"{path} on the server is not the report {writer} wrote")
    return problems


def _written(expected: Mapping[str, Any]) -> set[str]:
    """The metric and tag keys and artifact paths one writer wrote."""
    return {*(expected.get("metrics") or {}), *(expected.get("tags") or {}), *_expected_digests(expected)}


def _not_written(run: Run, artifacts: Mapping[str, bytes | None], expected: Mapping[str, Any],
                 vouched_tags: Mapping[str, str]) -> list[str]:
    """The run's green values (and reports) that this writer did not write (nor would set itself)."""
    from mlflow_green.record.signing import green_values

    metrics, tags = green_values(run.data.metrics, run.data.tags)
    tags = {key: value for key, value in tags.items() if vouched_tags.get(key) != value}
    present = {*metrics, *tags, *(path for path, data in artifacts.items() if data is not None)}
    return sorted(present - _written(expected))


def _keys_for_prior(key: SigningKey, prior_keys: TrustedKeys | None) -> TrustedKeys:
    keys = {key_id: prior_keys.get(key_id) for key_id in prior_keys.ids} if prior_keys is not None else {}
    return TrustedKeys({**keys, key.key_id: key.public_key})


def _changed_since_signed(client: MlflowClient, run: Run, artifacts: Mapping[str, bytes | None], key: SigningKey,
                          expected: Mapping[str, Any], prior_keys: TrustedKeys | None) -> list[str]:
    """A run signed before (an earlier fit, then an evaluation): values signed then may change only
    if this writer changed them — anything else changed in between is not signed over."""
    run_id = run.info.run_id

    def read(path: str) -> bytes | None:
        return artifacts[path] if path in artifacts else read_artifact(client, run_id, path)

    trusted = _keys_for_prior(key, prior_keys)
    prior = verify(run_id, run.data.metrics, run.data.tags, read, trusted)
    if prior.ok:
        return []
    if prior.status != "tampered" or not prior.changed_keys:
        return [f"its earlier signature does not verify with key {', '.join(trusted.ids)}: {prior.reason}"]
    written = _written(expected)
    return [line for key_name, line in zip(prior.changed_keys, prior.changes) if key_name not in written]


def sign_run(
    client: MlflowClient,
    run_id: str,
    key: SigningKey,
    *,
    expected: Mapping[str, Any] | None = None,
    writer: str = "this training",
    covered_only: bool = False,
    prior_keys: TrustedKeys | None = None,
    vouched_tags: Mapping[str, str] | None = None,
) -> bool:
    """Sign the run's green values as the server has them now.

    Refused (a warning, False) when a value this writer logged is not the run's value on the
    server, or when the run was signed before and a value signed then was changed since by
    anyone but this writer.

    Args:
        client: The tracking server's client.
        run_id: The run.
        key: The signing key.
        expected: Values this writer logged (:meth:`WriteLedger.expected`); when one differs on
            the server, the run is not signed.
        writer: Who logged ``expected``, for the warning (``this training``, ``this evaluation``).
        covered_only: Also refuse when the run holds green values (or a report) that this writer
            did not write and no earlier valid signature covers: what the ``green`` evaluator
            asks, so that it never signs a training's figures it did not measure.
        prior_keys: Public keys an earlier signature of the run may be by, besides ``key`` (the
            training host's, when an evaluation host signs again with its own key).
        vouched_tags: With ``covered_only``: tags this host sets on every run it creates (its
            hardware and region, :mod:`~mlflow_green.record.run_context`), not counted as values
            it did not write when the run holds exactly these values.

    Returns:
        True if signed; False when refused (a warning says why).

    Raises:
        mlflow.exceptions.MlflowException: Reading or writing the run failed (retry later).
        ArgumentTypeError: ``client`` or ``key`` of the wrong type.
    """
    _check_client(client)
    if not isinstance(key, SigningKey):
        raise ArgumentTypeError("key", "a SigningKey (SigningKey.from_file(path))", key)
    if prior_keys is not None and not isinstance(prior_keys, TrustedKeys):
        raise ArgumentTypeError("prior_keys", "a TrustedKeys or None", prior_keys)
    expected = expected or {}
    run = client.get_run(run_id)
    artifacts = read_artifacts(client, run_id, SIGNED_ARTIFACTS)
    problems = _mismatches(run, artifacts, expected, writer)
    previous = run.data.tags.get(schema.TAG_SIGNATURE)
    if previous is not None and not problems:
        problems = _changed_since_signed(client, run, artifacts, key, expected, prior_keys)
    elif previous is None and not problems and covered_only:
        others = _not_written(run, artifacts, expected, vouched_tags or {})
        if others:
            shown = ", ".join(others[:8]) + (f" and {len(others) - 8} more" if len(others) > 8 else "")
            logger.warning("mlflow-green: not signing run %s: it holds green values %s did not measure and no valid "
                           "signature covers them (%s); sign them where they were measured (%s there)",
                           run_id, writer, shown, "MLFLOW_GREEN_SIGNING_KEY")
            return False
    if problems:
        logger.warning("mlflow-green: not signing run %s: values changed before they could be signed: %s",
                       run_id, "; ".join(problems))
        return False
    manifest = Manifest.build(run_id, run.data.metrics, run.data.tags, artifacts[schema.REPORT_ARTIFACT],
                              artifacts[schema.INFERENCE_REPORT_ARTIFACT])
    client.log_text(run_id, manifest.to_bytes().decode("utf-8"), schema.SIGNED_MANIFEST_ARTIFACT)
    client.set_tag(run_id, schema.TAG_SIGNATURE, key.sign(manifest))
    logger.info("mlflow-green: signed run %s with key %s", run_id, key.key_id)
    return True


def apply_sign_entry(client: MlflowClient, run_id: str, entry: Mapping[str, Any]) -> None:
    """Send a spooled ``sign`` entry (see the module docstring). A key that cannot be used here is
    a warning, not a retry: the values stay unsigned."""
    try:
        key = SigningKey.from_file(entry["key_path"])
    except SignatureError as exc:
        logger.warning("mlflow-green: run %s is not signed: %s", run_id, exc)
        return
    if key.key_id != entry.get("key_id"):
        logger.warning("mlflow-green: run %s is not signed: %s now holds key %s, not the key %s it was measured with",
                       run_id, entry["key_path"], key.key_id, entry.get("key_id"))
        return
    sign_run(client, run_id, key, expected=entry.get("expected") or {})


def check_sign_entry(entry: Mapping[str, Any]) -> str | None:
    """Why a spooled ``sign`` entry is malformed (None if well formed)."""
    if not isinstance(entry.get("key_path"), str) or not entry["key_path"]:
        return "key_path must be the path of the signing key"
    expected = entry.get("expected", {})
    if not isinstance(expected, Mapping) or not isinstance(expected.get("metrics", {}), Mapping) \
            or not isinstance(expected.get("tags", {}), Mapping):
        return "expected must be an object with metrics and tags"
    return None


def verify_run(client: MlflowClient, run_id: str, trusted: TrustedKeys) -> Verification:
    """Verify a run's signature through the client (``mlflow-green verify``).

    Raises:
        mlflow.exceptions.MlflowException: The run does not exist or the server failed.
        ArgumentTypeError: ``client`` or ``trusted`` of the wrong type.
    """
    _check_client(client)
    if not isinstance(trusted, TrustedKeys):
        raise ArgumentTypeError("trusted", "a TrustedKeys (TrustedKeys.from_paths([...]))", trusted)
    run = client.get_run(run_id)
    return verify(run_id, run.data.metrics, run.data.tags, lambda path: read_artifact(client, run_id, path), trusted)


def _register() -> None:
    from mlflow_green.record.ops import register_operation

    register_operation(SIGN_OP, apply_sign_entry, check_sign_entry)


_register()
