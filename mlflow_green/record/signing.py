"""Signed measurements: Ed25519 keys, the signed manifest of a run's green values, and its verification.

Pure (no MLflow I/O): :mod:`mlflow_green.record.run_signature` reads and writes runs.

At the end of a fit (or of a ``green`` evaluation), the host that measured signs a **manifest**:
the run id, the latest value of every ``green/`` metric, every ``green.`` tag (but
``green.signature``) and the SHA-256 of each report artifact (:data:`SIGNED_ARTIFACTS`:
``green/report.json`` and ``green/inference_report.json``, ``null`` for one the run does not
have, so adding it later shows), as canonical JSON. The manifest's exact bytes are stored as the artifact
``green/signed_manifest.json`` and the signature as the run tag ``green.signature`` (JSON: the
key id, the manifest's SHA-256, the signature). A verifier holding the public key checks the
signature, then compares every signed value with the run's values now and names each one that
changed, appeared or disappeared since.

Keys (generation, ``MLFLOW_GREEN_SIGNING_KEY``, ``MLFLOW_GREEN_TRUSTED_KEYS``) are in
:mod:`mlflow_green.record.signing_keys` and re-exported here.

Example:
    >>> import tempfile
    >>> private, public = generate_key_pair(tempfile.mkdtemp())
    >>> key, trusted = SigningKey.from_file(private), TrustedKeys.from_paths([public])
    >>> manifest = Manifest.build("run1", {"green/energy_kwh": 0.25}, {"green.estimated": "false"}, b"{}")
    >>> tag = key.sign(manifest)
    >>> verify(manifest.run_id, {"green/energy_kwh": 0.25}, {"green.estimated": "false", "green.signature": tag},
    ...        {"green/signed_manifest.json": manifest.to_bytes(), "green/report.json": b"{}"}.get, trusted).ok
    True
    >>> verify("run1", {"green/energy_kwh": 1e-12}, {"green.estimated": "false", "green.signature": tag},
    ...        {"green/signed_manifest.json": manifest.to_bytes(), "green/report.json": b"{}"}.get, trusted).reason
    'changed after signing: green/energy_kwh: signed 0.25, now 1e-12'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow_green.record import schema
from mlflow_green.record.signing_keys import (
    ALGORITHM,
    ENV_SIGNING_KEY,
    ENV_TRUSTED_KEYS,
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    SigningKey,
    TrustedKeys,
    canonical_json,
    generate_key_pair,
    key_id_of,
)

__all__ = [
    "ENV_SIGNING_KEY",
    "ENV_TRUSTED_KEYS",
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "SIGNED_ARTIFACTS",
    "Manifest",
    "SigningKey",
    "TrustedKeys",
    "Verification",
    "canonical_json",
    "compare",
    "generate_key_pair",
    "green_values",
    "key_id_of",
    "verify",
]

MANIFEST_VERSION = 2
"""Version 2 covers every :data:`SIGNED_ARTIFACTS`; version 1 (``report_sha256`` only) still verifies."""

SIGNED_ARTIFACTS = (schema.REPORT_ARTIFACT, schema.INFERENCE_REPORT_ARTIFACT)
"""The artifacts whose SHA-256 a signature covers: the training report and the inference report."""

ArtifactReader = Callable[[str], "bytes | None"]
"""Reads one run artifact by path; None when the run has no such artifact."""


def _number(value: float) -> float | str:
    value = float(value)
    return value if math.isfinite(value) else str(value)  # 'nan', 'inf', '-inf'


def green_values(metrics: Mapping[str, float], tags: Mapping[str, str]) -> tuple[dict[str, float | str], dict[str, str]]:
    """The values a signature covers: every ``green/`` metric and every ``green.`` tag but the signature."""
    signed_metrics = {k: _number(v) for k, v in metrics.items() if k.startswith(schema.METRIC_PREFIX)}
    signed_tags = {k: str(v) for k, v in tags.items() if k.startswith(schema.TAG_PREFIX) and k != schema.TAG_SIGNATURE}
    return signed_metrics, signed_tags


def _sha256(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


@dataclass(frozen=True)
class Manifest:
    """What a signature covers.

    Attributes:
        run_id: The run.
        metrics: Latest value of every ``green/`` metric (non-finite values as ``"nan"``/``"inf"``).
        tags: Every ``green.`` tag but ``green.signature``.
        artifacts: SHA-256 of each covered artifact as stored, None for one the run did not have
            (version 2: every :data:`SIGNED_ARTIFACTS`; version 1: ``green/report.json`` only).
        version: The manifest format (see :data:`MANIFEST_VERSION`).
    """

    run_id: str
    metrics: Mapping[str, float | str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    artifacts: Mapping[str, str | None] = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    @property
    def report_sha256(self) -> str | None:
        """SHA-256 of ``green/report.json`` when signed; None when the run had none."""
        return self.artifacts.get(schema.REPORT_ARTIFACT)

    @classmethod
    def build(cls, run_id: str, metrics: Mapping[str, float], tags: Mapping[str, str], report: bytes | None,
              inference_report: bytes | None = None) -> Manifest:
        """The manifest of a run's values (other metrics and tags are left out)."""
        signed_metrics, signed_tags = green_values(metrics, tags)
        digests = {schema.REPORT_ARTIFACT: _sha256(report), schema.INFERENCE_REPORT_ARTIFACT: _sha256(inference_report)}
        return cls(run_id, signed_metrics, signed_tags, digests)

    def to_bytes(self) -> bytes:
        """The canonical bytes that are signed and stored as ``green/signed_manifest.json``."""
        document: dict[str, Any] = {"version": self.version, "run_id": self.run_id, "metrics": dict(self.metrics),
                                    "tags": dict(self.tags)}
        if self.version == 1:
            document["report_sha256"] = self.report_sha256
        else:
            document["artifacts_sha256"] = dict(self.artifacts)
        return canonical_json(document)

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse a stored manifest, version 1 or 2 (raises ``ValueError`` when it is not one)."""
        value = json.loads(data.decode("utf-8"))
        if not isinstance(value, dict) or value.get("version") not in (1, MANIFEST_VERSION):
            raise ValueError("not a version 1 or 2 mlflow-green manifest")
        metrics, tags = value.get("metrics"), value.get("tags")
        if not isinstance(metrics, dict) or not isinstance(tags, dict) or not isinstance(value.get("run_id"), str):
            raise ValueError("malformed manifest")
        if value["version"] == 1:
            artifacts = {schema.REPORT_ARTIFACT: value.get("report_sha256")}
        else:
            artifacts = value.get("artifacts_sha256")
            if not isinstance(artifacts, dict) or not all(isinstance(v, (str, type(None))) for v in artifacts.values()):
                raise ValueError("malformed manifest: artifacts_sha256")
        return cls(value["run_id"], metrics, tags, artifacts, value["version"])


@dataclass(frozen=True)
class Verification:
    """The outcome of verifying a run's signature.

    Attributes:
        ok: The signature is valid, by a trusted key, and no signed value changed since.
        status: ``signed``, ``unsigned``, ``unknown key``, ``invalid`` or ``tampered``.
        reason: One readable line naming what is wrong (or whose key signed).
        key_id: The signing key's id, when the tag names one.
        changes: Each value that changed, appeared or disappeared after signing.
        changed_keys: The metric or tag keys (or ``green/report.json``) of ``changes``.
    """

    ok: bool
    status: str
    reason: str
    key_id: str | None = None
    changes: tuple[str, ...] = ()
    changed_keys: tuple[str, ...] = ()


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"{value:.6g}" if isinstance(value, float) else str(value)


def compare(manifest: Manifest, metrics: Mapping[str, float], tags: Mapping[str, str],
            read_artifact: ArtifactReader) -> tuple[tuple[str, str], ...]:
    """Every difference between what was signed and the run's values now: ``(key, one readable line)``.

    ``read_artifact`` is asked only for the artifacts the manifest covers."""
    now_metrics, now_tags = green_values(metrics, tags)
    changes = []
    for kind, signed, now in (("metric", manifest.metrics, now_metrics), ("tag", manifest.tags, now_tags)):
        for key in sorted(set(signed) | set(now)):
            if key not in now:
                changes.append((key, f"{key}: removed after signing (signed {_shown(signed[key])})"))
            elif key not in signed:
                changes.append((key, f"{key}: {_shown(now[key])} was {'logged' if kind == 'metric' else 'set'} after signing"))
            elif signed[key] != now[key]:
                changes.append((key, f"{key}: signed {_shown(signed[key])}, now {_shown(now[key])}"))
    for path in sorted(manifest.artifacts):
        signed_digest, digest = manifest.artifacts[path], _sha256(read_artifact(path))
        if digest != signed_digest:
            what = "removed" if digest is None else "added" if signed_digest is None else "changed"
            changes.append((path, f"{path}: {what} after signing"))
    return tuple(changes)


def verify(
    run_id: str,
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    read_artifact: ArtifactReader,
    trusted: TrustedKeys,
) -> Verification:
    """Verify a run's ``green.signature`` against ``trusted`` and its values now (never raises on bad input)."""
    tag = tags.get(schema.TAG_SIGNATURE)
    if tag is None:
        return Verification(False, "unsigned", f"not signed: the run has no {schema.TAG_SIGNATURE} tag "
                            f"(set {ENV_SIGNING_KEY} on the training host)")
    try:
        info = json.loads(tag)
        key_id, signature = str(info["key_id"]), base64.b64decode(info["signature"], validate=True)
        if info.get("alg") != ALGORITHM:
            raise ValueError(f"algorithm {info.get('alg')!r}")
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        return Verification(False, "invalid", f"{schema.TAG_SIGNATURE} is not an mlflow-green signature ({exc})")
    public_key = trusted.get(key_id)
    if public_key is None:
        known = ", ".join(trusted.ids) or f"none: {ENV_TRUSTED_KEYS} is empty"
        return Verification(False, "unknown key", f"signed by key {key_id}, which is not trusted (trusted: {known})", key_id)
    data = read_artifact(schema.SIGNED_MANIFEST_ARTIFACT)
    if data is None:
        return Verification(False, "tampered", f"the signed manifest {schema.SIGNED_MANIFEST_ARTIFACT} is missing", key_id)
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(signature, data)
        manifest = Manifest.from_bytes(data)
    except (InvalidSignature, ValueError, UnicodeDecodeError):
        return Verification(False, "tampered", f"{schema.SIGNED_MANIFEST_ARTIFACT} or {schema.TAG_SIGNATURE} was "
                            "changed after signing (the signature does not match)", key_id)
    if manifest.run_id != run_id:
        return Verification(False, "tampered", f"the signature was made for run {manifest.run_id}, not this run "
                            "(copied from another run)", key_id)
    differences = compare(manifest, metrics, tags, read_artifact)
    if differences:
        changes = tuple(line for _, line in differences)
        return Verification(False, "tampered", "changed after signing: " + "; ".join(changes), key_id, changes,
                            tuple(key for key, _ in differences))
    return Verification(True, "signed", f"signed by key {key_id}; no signed value changed since", key_id)
