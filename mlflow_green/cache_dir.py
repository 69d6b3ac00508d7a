"""Where mlflow-green keeps what it computes once per machine: resolved power models, entry points.

``$MLFLOW_GREEN_CACHE_DIR``, else :func:`user_cache_dir`: ``$XDG_CACHE_HOME/mlflow-green``, else
``~/.cache/mlflow-green`` (else, with no home folder, ``<temp>/mlflow-green-<uid>``).
Everything in it can be deleted at any time: it is recomputed on next use (except, while a
``ddp_spawn`` training runs, the sessions its ranks hand back in ``spawned/``). Tests and
benchmarks point ``MLFLOW_GREEN_CACHE_DIR`` at a temporary folder.

Example:
    >>> import os
    >>> os.environ["MLFLOW_GREEN_CACHE_DIR"] = "/tmp/green-cache"
    >>> str(cache_dir())
    '/tmp/green-cache'
    >>> del os.environ["MLFLOW_GREEN_CACHE_DIR"]
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE_DIR = "MLFLOW_GREEN_CACHE_DIR"


def cache_dir() -> Path:
    """The cache folder (not created here). Never raises."""
    configured = os.environ.get(ENV_CACHE_DIR)
    if configured:
        return Path(configured)
    return user_cache_dir()


def user_cache_dir() -> Path:
    """mlflow-green's folder in the user's cache, whatever ``MLFLOW_GREEN_CACHE_DIR`` says. Never raises.

    ``$XDG_CACHE_HOME/mlflow-green``, else ``~/.cache/mlflow-green``; on a machine where the user
    has no home folder (``HOME`` unset and no passwd entry: containers run with ``--user N``,
    system users) ``<temp>/mlflow-green-<uid>``. The spool folder lives under it too
    (:func:`mlflow_green.record.spool_format.default_spool_dir`).
    """
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except (RuntimeError, KeyError, OSError):  # no home folder (some containers, system users)
            import tempfile

            uid = os.getuid() if hasattr(os, "getuid") else "user"
            return Path(tempfile.gettempdir()) / f"mlflow-green-{uid}"
    return Path(base) / "mlflow-green"


def write_atomically(path: Path, content: str | bytes) -> None:
    """Write ``content`` to ``path`` so that a concurrent reader never sees half a file (raises OSError)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
