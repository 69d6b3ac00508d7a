"""How long training may wait on the tracking server, and how the background writer retries.

Training never waits on MLflow longer than these bounds, whatever MLflow's own HTTP retry
settings (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_TIMEOUT``) are: every request
runs in a background thread and training only waits for it up to the deadline.

- ``MLFLOW_GREEN_START_TIMEOUT_S`` (argument ``start_timeout_s``): how long the start of a fit
  waits for MLflow to create its run; default 2 s. After that the creation is spooled and
  training starts; the run is created as soon as the server answers (or by ``mlflow-green sync``).
  A store on this machine's disk (``sqlite:`` with a file, ``file:``, a folder) is waited for up to
  the end timeout unless a start timeout was chosen (:meth:`RunTimeouts.start_for`).
- ``MLFLOW_GREEN_END_TIMEOUT_S`` (argument ``end_timeout_s``): how long the end of a fit waits
  for the backlog (metrics, tags, report, the run's end) to be sent; default 30 s. What is left
  stays in the spool. ``MLFLOW_GREEN_FLUSH_TIMEOUT_S`` is the older name of the same setting.
- ``MLFLOW_GREEN_RETRY_MAX_S``: the longest pause of the background writer between two tries
  of a write that failed transiently (it starts at 1 s, or at this value if smaller, and doubles);
  default 60 s.
- ``MLFLOW_GREEN_SEND_INTERVAL_S``: while training, writes that come within this long of the
  last send wait for each other and go in one request (a flush, the end of a fit or a close send
  at once); default 5 s, ``0`` sends each write as soon as it comes. Each write is in the spool
  within milliseconds whatever this is: it only sets how soon points show in MLflow.

The meters measure the training, never this waiting: they start after the run is bound and
stop before the backlog is flushed.

Example:
    >>> RunTimeouts.resolve(environ={}).start_s
    2.0
    >>> RunTimeouts.resolve(end_timeout_s=5, environ={}).end_s
    5.0
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

from mlflow_green.errors import ConfigError
from mlflow_green.validation import parse_env_number

ENV_START_TIMEOUT_S = "MLFLOW_GREEN_START_TIMEOUT_S"
ENV_END_TIMEOUT_S = "MLFLOW_GREEN_END_TIMEOUT_S"
ENV_FLUSH_TIMEOUT_S = "MLFLOW_GREEN_FLUSH_TIMEOUT_S"
ENV_RETRY_MAX_S = "MLFLOW_GREEN_RETRY_MAX_S"
ENV_SEND_INTERVAL_S = "MLFLOW_GREEN_SEND_INTERVAL_S"

DEFAULT_START_TIMEOUT_S = 2.0
DEFAULT_END_TIMEOUT_S = 30.0
DEFAULT_RETRY_MAX_S = 60.0
DEFAULT_SEND_INTERVAL_S = 5.0
RETRY_START_S = 1.0
MAX_TIMEOUT_S = 3600.0

_RULE = f"a number of seconds from 0 to {MAX_TIMEOUT_S:g}"


@dataclass(frozen=True)
class RunTimeouts:
    """The bounds on waiting for the tracking server (see the module docstring).

    Attributes:
        start_s: Longest wait for the run to be created at the start of a fit.
        end_s: Longest wait for the backlog at the end of a fit.
        retry_max_s: Longest pause between two tries of a transiently failing write.
        send_interval_s: How long writes gather after a send before the next one (0: no gathering).
    """

    start_s: float = DEFAULT_START_TIMEOUT_S
    end_s: float = DEFAULT_END_TIMEOUT_S
    retry_max_s: float = DEFAULT_RETRY_MAX_S
    send_interval_s: float = DEFAULT_SEND_INTERVAL_S
    start_chosen: bool = field(default=True, compare=False)  # False: the default, which a local store extends

    def start_for(self, tracking_uri: str | None) -> float:
        """The start bound for ``tracking_uri``. A local store (a ``sqlite:`` file, a ``file:`` or folder store) is
        never down, only slow to make its tables the first time (seconds on a busy machine): unless a start
        timeout was chosen, it is waited for up to the end timeout, so that its run exists as training starts."""
        return self.start_s if self.start_chosen or not is_local_store(tracking_uri) else max(self.start_s, self.end_s)

    @property
    def retry_start_s(self) -> float:
        """The first pause after a transient failure (it doubles up to :attr:`retry_max_s`)."""
        return min(RETRY_START_S, self.retry_max_s)

    @classmethod
    def resolve(
        cls,
        *,
        start_timeout_s: float | None = None,
        end_timeout_s: float | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> RunTimeouts:
        """Arguments first, then ``MLFLOW_GREEN_*`` variables, then defaults; ``ConfigError`` if invalid."""
        env = os.environ if environ is None else environ
        start = _pick("start_timeout_s", start_timeout_s, env, (ENV_START_TIMEOUT_S,), DEFAULT_START_TIMEOUT_S)
        end = _pick("end_timeout_s", end_timeout_s, env, (ENV_END_TIMEOUT_S, ENV_FLUSH_TIMEOUT_S), DEFAULT_END_TIMEOUT_S)
        retry = _pick("retry_max_s", None, env, (ENV_RETRY_MAX_S,), DEFAULT_RETRY_MAX_S)
        if retry <= 0:
            raise ConfigError(f"Environment variable {ENV_RETRY_MAX_S}={env.get(ENV_RETRY_MAX_S)!r} must be > 0")
        send_interval = _pick("send_interval_s", None, env, (ENV_SEND_INTERVAL_S,), DEFAULT_SEND_INTERVAL_S)
        chosen = start_timeout_s is not None or bool((env.get(ENV_START_TIMEOUT_S) or "").strip())
        return cls(start, end, retry, send_interval, start_chosen=chosen)


def is_local_store(tracking_uri: str | None) -> bool:
    """True for a tracking store on this machine's disk: ``sqlite:`` with a file, ``file:``, a folder path.

    Example:
        >>> [is_local_store(u) for u in ("sqlite:///mlflow.db", "./mlruns", "http://host:5000", "postgresql://db/m")]
        [True, True, False, False]
    """
    if not tracking_uri:
        return False
    scheme = urlparse(tracking_uri).scheme.lower()
    if scheme == "sqlite":
        return ":memory:" not in tracking_uri
    return scheme in ("", "file") or len(scheme) == 1  # a path (a Windows drive letter reads as a scheme)


def _pick(name: str, value: object, env: Mapping[str, str], variables: tuple[str, ...], default: float) -> float:
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not _ok(float(value)):
            raise ConfigError(f"Invalid {name}={value!r} (from argument {name}=): expected {_RULE}.")
        return float(value)
    for var in variables:
        raw = (env.get(var) or "").strip()
        if not raw:
            continue
        return parse_env_number(raw, var, f"expected {_RULE}", _ok)
    return default


def _ok(seconds: float) -> bool:
    return math.isfinite(seconds) and 0.0 <= seconds <= MAX_TIMEOUT_S


__all__ = [
    "DEFAULT_END_TIMEOUT_S",
    "DEFAULT_SEND_INTERVAL_S",
    "DEFAULT_START_TIMEOUT_S",
    "ENV_END_TIMEOUT_S",
    "ENV_FLUSH_TIMEOUT_S",
    "ENV_RETRY_MAX_S",
    "ENV_SEND_INTERVAL_S",
    "ENV_START_TIMEOUT_S",
    "RunTimeouts",
    "is_local_store",
]
