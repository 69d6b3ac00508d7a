"""Ed25519 keys for signed measurements: generating a pair, the signing key, the trusted public keys.

``mlflow-green keys generate DIR`` (:func:`generate_key_pair`) writes ``green-signing.key``
(private, mode 0600) and ``green-signing.pub``. ``MLFLOW_GREEN_SIGNING_KEY`` (the private key's
path) makes the training host sign; ``MLFLOW_GREEN_TRUSTED_KEYS`` (public key paths, separated by
``os.pathsep``; a folder means every ``*.pub`` in it) tells the gate and ``mlflow-green verify``
whom to trust. A key is named by its id: the first 16 hex digits of the SHA-256 of the raw
public key.

Example:
    >>> import tempfile
    >>> private, public = generate_key_pair(tempfile.mkdtemp())
    >>> SigningKey.from_file(private).key_id == TrustedKeys.from_paths([public]).ids[0]
    True
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_green.errors import ArgumentTypeError, SignatureError
from mlflow_green.record import schema

if TYPE_CHECKING:
    from mlflow_green.record.signing import Manifest

ENV_SIGNING_KEY = "MLFLOW_GREEN_SIGNING_KEY"
"""Path of the Ed25519 private key (PEM) that signs the runs measured on this host."""
ENV_TRUSTED_KEYS = "MLFLOW_GREEN_TRUSTED_KEYS"
"""Public keys (PEM paths, or folders of ``*.pub``, separated by ``os.pathsep``) whose signatures are trusted."""
PRIVATE_KEY_FILE = "green-signing.key"
PUBLIC_KEY_FILE = "green-signing.pub"
ALGORITHM = "ed25519"


def _serialization() -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization


def key_id_of(public_key: Any) -> str:
    """The key id: the first 16 hex digits of the SHA-256 of the raw public key."""
    s = _serialization()
    raw = public_key.public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key_pair(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair into ``directory``: ``green-signing.key`` (0600) and ``green-signing.pub``.

    Raises:
        SignatureError: A key file is already there (never overwritten) or the folder is not writable.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    s = _serialization()
    folder = Path(_path("directory", directory))
    private_path, public_path = folder / PRIVATE_KEY_FILE, folder / PUBLIC_KEY_FILE
    for path in (private_path, public_path):
        if path.exists():
            raise SignatureError(f"{path} already exists; keys are never overwritten. Choose another folder.")
    key = Ed25519PrivateKey.generate()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        private_pem = key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as f:
            f.write(private_pem)
        public_path.write_bytes(key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
    except OSError as exc:
        raise SignatureError(f"cannot write the key pair into {folder}: {exc}") from None
    return private_path, public_path


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no spaces, UTF-8 (non-finite numbers must be encoded first)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _path(argument: str, value: Any) -> str:
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise ArgumentTypeError(argument, "a file or folder path (str or os.PathLike)", value)
    return os.fspath(value)


def _load_pem(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SignatureError(f"cannot read the {what} {os.fspath(path)!r}: {exc}") from None


class SigningKey:
    """An Ed25519 private key that signs manifests.

    Example::

        key = SigningKey.from_file("/secure/green-signing.key")
        tag = key.sign(Manifest.build(run_id, metrics, tags, report_bytes))
    """

    def __init__(self, private_key: Any, path: str = "") -> None:
        self._key = private_key
        self.path = path
        self.key_id = key_id_of(private_key.public_key())

    @property
    def public_key(self) -> Any:
        """The matching Ed25519 public key."""
        return self._key.public_key()

    def __repr__(self) -> str:  # never the key material
        return f"SigningKey(key_id={self.key_id!r}, path={self.path!r})"

    def __reduce__(self) -> tuple[Any, tuple[str]]:  # pickled as its path (ddp_spawn): the key is read again
        return (SigningKey.from_file, (self.path,))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Load a PEM private key (unencrypted PKCS8, as ``mlflow-green keys generate`` writes).

        Raises:
            SignatureError: Missing, unreadable, encrypted, or not an Ed25519 private key.
        """
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        data = _load_pem(_path("path", path), "signing key")
        try:
            key = _serialization().load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise SignatureError(f"{os.fspath(path)} is not an unencrypted PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SignatureError(f"{os.fspath(path)} is a {type(key).__name__}; mlflow-green signs with Ed25519 keys only")
        return cls(key, os.fspath(path))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SigningKey | None:
        """The key named by ``MLFLOW_GREEN_SIGNING_KEY``; None when it is not set."""
        environ = os.environ if environ is None else environ
        path = environ.get(ENV_SIGNING_KEY, "").strip()
        return cls.from_file(path) if path else None

    def sign(self, manifest: Manifest) -> str:
        """The ``green.signature`` tag value for ``manifest``."""
        data = manifest.to_bytes()
        signature = base64.b64encode(self._key.sign(data)).decode("ascii")
        return canonical_json({
            "alg": ALGORITHM,
            "key_id": self.key_id,
            "manifest": schema.SIGNED_MANIFEST_ARTIFACT,
            "manifest_sha256": hashlib.sha256(data).hexdigest(),
            "signature": signature,
        }).decode("ascii")


class TrustedKeys:
    """The public keys whose signatures a verifier accepts, by key id.

    Example::

        trusted = TrustedKeys.from_env()          # MLFLOW_GREEN_TRUSTED_KEYS
        trusted.ids                               # ('3f2a9c1b04de55aa', ...)
    """

    def __init__(self, keys: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> None:
        self._keys = dict(keys)
        self.sources = dict(sources or {})

    @property
    def ids(self) -> tuple[str, ...]:
        """The trusted key ids, sorted."""
        return tuple(sorted(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key_id: str) -> Any | None:
        """The public key of ``key_id``; None when it is not trusted."""
        return self._keys.get(key_id)

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike[str]]) -> TrustedKeys:
        """Load PEM public keys (a folder adds every ``*.pub`` file in it).

        Raises:
            SignatureError: A path is missing or unreadable, or holds no Ed25519 public key.
        """
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        keys: dict[str, Any] = {}
        sources: dict[str, str] = {}
        files: list[Path] = []
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]  # one path, not its characters
        elif not isinstance(paths, Iterable):
            raise ArgumentTypeError("paths", "a list of public key paths", paths)
        for path in paths:
            folder = Path(_path("paths[...]", path))
            files.extend(sorted(folder.glob("*.pub")) if folder.is_dir() else [folder])
        for file in files:
            data = _load_pem(file, "trusted public key")
            try:
                key = _serialization().load_pem_public_key(data)
            except (ValueError, TypeError) as exc:
                raise SignatureError(f"{file} is not a PEM public key: {exc}") from None
            if not isinstance(key, Ed25519PublicKey):
                raise SignatureError(f"{file} is a {type(key).__name__}; only Ed25519 public keys are trusted")
            keys[key_id_of(key)] = key
            sources[key_id_of(key)] = str(file)
        return cls(keys, sources)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrustedKeys:
        """The keys listed in ``MLFLOW_GREEN_TRUSTED_KEYS`` (empty when it is not set)."""
        environ = os.environ if environ is None else environ
        value = environ.get(ENV_TRUSTED_KEYS, "")
        return cls.from_paths(part.strip() for part in value.split(os.pathsep) if part.strip())
