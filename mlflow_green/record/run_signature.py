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

import contextlib
import hashlib
import json
import logging
import math
import os
import posixpath
import tempfile
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from mlflow_green.errors import ArgumentTypeError, SignatureError
from mlflow_green.record import schema
from mlflow_green.record.signing import Manifest, SigningKey, TrustedKeys, Verification, verify

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
        self._report: str | None = None

    def observe(self, entry: Mapping[str, Any]) -> None:
        """Record one write (a spool entry: ``metrics``, ``tags`` or ``report``; others are ignored)."""
        kind = entry.get("op")
        if kind == "metrics":
            for key, value, timestamp_ms, step in entry.get("metrics", ()):
                point = (int(step), int(timestamp_ms), float(value))
                if key.startswith(schema.METRIC_PREFIX) and (key not in self._metrics or point > self._metrics[key]):
                    self._metrics[key] = point
        elif kind == "tags":
            self._tags.update({k: str(v) for k, v in entry.get("tags", {}).items() if k.startswith(schema.TAG_PREFIX)})
        elif kind == "report" and entry.get("artifact_file", schema.REPORT_ARTIFACT) == schema.REPORT_ARTIFACT:
            self._report = report_digest(entry.get("report"))

    def expected(self) -> dict[str, Any]:
        """The values to find on the server before signing."""
        return {
            "metrics": {key: point[2] for key, point in self._metrics.items()},
            "tags": dict(self._tags),
            "report_digest": self._report,
        }

    def sign_entry(self, key: SigningKey) -> dict[str, Any]:
        """The spool entry asking to sign the run once every write before it was sent."""
        return {"op": SIGN_OP, "key_path": key.path, "key_id": key.key_id, "expected": self.expected()}


_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
_PROGRESS_LOCK = threading.Lock()


@contextlib.contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow draws a progress bar for every download; not for our small reads (nor into a CLI's output)."""
    with _PROGRESS_LOCK:
        before = os.environ.get(_PROGRESS_BAR)
        os.environ[_PROGRESS_BAR] = "false"
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(_PROGRESS_BAR, None)
            else:
                os.environ[_PROGRESS_BAR] = before


def _check_client(client: Any) -> None:
    if not all(hasattr(client, name) for name in ("get_run", "list_artifacts", "download_artifacts")):
        raise ArgumentTypeError("client", "an mlflow.MlflowClient", client)


def read_artifact(client: MlflowClient, run_id: str, path: str) -> bytes | None:
    """One artifact of a run through the client; None when the run has none at ``path``."""
    folder = posixpath.dirname(path) or None
    if path not in {f.path for f in client.list_artifacts(run_id, folder)}:
        return None
    with tempfile.TemporaryDirectory(prefix="mlflow-green-") as tmp, _no_progress_bar():
        with open(client.download_artifacts(run_id, path, tmp), "rb") as f:
            return f.read()


def _mismatches(run: Run, report: bytes | None, expected: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, value in (expected.get("metrics") or {}).items():
        now = run.data.metrics.get(key)
        if now is None or not (now == value or (math.isnan(now) and math.isnan(value))):
            problems.append(f"{key} is {now!r} on the server, but this training logged {value!r}")
    for key, value in (expected.get("tags") or {}).items():
        if run.data.tags.get(key) != value:
            problems.append(f"{key} is {run.data.tags.get(key)!r} on the server, but this training set {value!r}")
    digest = expected.get("report_digest")
    if digest is not None:
        try:
            stored = report_digest(json.loads(report)) if report is not None else None
        except ValueError:
            stored = None
        if stored != digest:
            problems.append(f"{schema.REPORT_ARTIFACT} on the server is not the report this training wrote")
    return problems


def _changed_since_signed(client: MlflowClient, run: Run, key: SigningKey, expected: Mapping[str, Any]) -> list[str]:
    """A run signed before (an earlier fit, then an evaluation): values signed then may change only
    if this writer changed them — anything else changed in between is not signed over."""
    run_id = run.info.run_id
    prior = verify(run_id, run.data.metrics, run.data.tags, lambda path: read_artifact(client, run_id, path),
                   TrustedKeys({key.key_id: key.public_key}))
    if prior.ok:
        return []
    if prior.status != "tampered" or not prior.changed_keys:
        return [f"its earlier signature does not verify with key {key.key_id}: {prior.reason}"]
    written = {*expected.get("metrics", {}), *expected.get("tags", {})}
    if expected.get("report_digest") is not None:
        written.add(schema.REPORT_ARTIFACT)
    return [line for key_name, line in zip(prior.changed_keys, prior.changes) if key_name not in written]


def sign_run(client: MlflowClient, run_id: str, key: SigningKey, *, expected: Mapping[str, Any] | None = None) -> bool:
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

    Returns:
        True if signed; False when refused (a warning says why).

    Raises:
        mlflow.exceptions.MlflowException: Reading or writing the run failed (retry later).
        ArgumentTypeError: ``client`` or ``key`` of the wrong type.
    """
    _check_client(client)
    if not isinstance(key, SigningKey):
        raise ArgumentTypeError("key", "a SigningKey (SigningKey.from_file(path))", key)
    run = client.get_run(run_id)
    report = read_artifact(client, run_id, schema.REPORT_ARTIFACT)
    problems = _mismatches(run, report, expected or {})
    previous = run.data.tags.get(schema.TAG_SIGNATURE)
    if previous is not None and not problems:
        problems = _changed_since_signed(client, run, key, expected or {})
    if problems:
        logger.warning("mlflow-green: not signing run %s: values changed before they could be signed: %s",
                       run_id, "; ".join(problems))
        return False
    manifest = Manifest.build(run_id, run.data.metrics, run.data.tags, report)
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
