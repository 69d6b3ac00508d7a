"""The one exception tree of mlflow-green.

Every error a user can hit derives from :class:`GreenError`, says what happened and
what to do about it.

Example:
    >>> from mlflow_green.errors import ConfigError, GreenError
    >>> issubclass(ConfigError, GreenError) and issubclass(ConfigError, ValueError)
    True
"""

from __future__ import annotations


class GreenError(Exception):
    """Base class of every error raised by mlflow-green."""


class ConfigError(GreenError, ValueError):
    """Bad configuration, raised at construction before any training starts."""


class ArgumentTypeError(ConfigError, TypeError):
    """An argument of the wrong type given to a public function: the message names the argument,
    what was given and what is accepted. Also a ``TypeError``, so code that catches that still works.

    Example:
        >>> err = ArgumentTypeError("model", "a registered model name (str)", 5)
        >>> print(err)
        model must be a registered model name (str), got 5 (int)
        >>> isinstance(err, TypeError) and isinstance(err, GreenError)
        True
    """

    def __init__(self, argument: str, expected: str, value: object) -> None:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        super().__init__(f"{argument} must be {expected}, got {shown} ({type(value).__name__})")
        self.argument = argument
        self.expected = expected


class UnknownRegionError(ConfigError):
    """A carbon-intensity region that the bundled data does not know."""


class UnknownMeterError(ConfigError):
    """A meter name that no registered plugin provides."""


class MeterError(GreenError, RuntimeError):
    """A meter could not be read. Trackers catch it and fall back; it never reaches training."""


class TrackerStateError(GreenError, RuntimeError):
    """A tracker method was called in the wrong order (e.g. ``stop()`` before ``start()``)."""


class ModelNotReadyError(GreenError, RuntimeError):
    """A model cannot be profiled yet (a torch model whose lazy modules are not initialised): inspectors raise it
    rather than initialise it themselves, and the callbacks profile it later (at the fit's end)."""


class MissingExtraError(GreenError, ImportError):
    """An optional dependency is missing; the message names the ``pip install`` to run."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'mlflow-green[{extra}]'"
        )
        self.package = package
        self.extra = extra


class PolicyError(ConfigError):
    """A malformed gate policy: the message names the table, the key, the problem and the valid keys.

    Example:
        >>> err = PolicyError("max_energy_kwh", "aliases.champion", "must be a number >= 0, got -1",
        ...                   valid_keys=("max_energy_kwh", "measured_only"), source="policy.toml")
        >>> print(err)
        policy.toml: [aliases.champion] max_energy_kwh: must be a number >= 0, got -1. Valid keys in [aliases.champion]: max_energy_kwh, measured_only
        >>> isinstance(err, ConfigError)
        True
    """

    def __init__(
        self,
        key: str | None,
        table: str | None,
        problem: str,
        *,
        valid_keys: tuple[str, ...] = (),
        source: str | None = None,
    ) -> None:
        where = " ".join(part for part in (f"[{table}]" if table else None, key) if part)
        message = f"{source}: " if source else ""
        message += f"{where}: {problem}" if where else problem
        if valid_keys:
            scope = f"in [{table}]" if table else "at the top level"
            message += f". Valid keys {scope}: {', '.join(valid_keys)}"
        super().__init__(message)
        self.key = key
        self.table = table
        self.problem = problem
        self.valid_keys = valid_keys
        self.source = source


class NotFoundError(GreenError, LookupError):
    """An experiment or registered model that the tracking server does not have.

    Attributes:
        kind: ``"experiment"`` or ``"model"``.
        name: The name (or id) asked for.
        suggestions: Close matches that do exist (also in the message).
    """

    def __init__(self, message: str, *, kind: str = "", name: str = "", suggestions: list[str] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.suggestions = list(suggestions or [])


class RankRequestError(GreenError, ValueError):
    """A ranking request that cannot be answered as asked (nothing to rank, an invalid filter)."""


class SignatureError(ConfigError):
    """A signing key or a trusted public key that cannot be used (missing, unreadable, not Ed25519).

    Raised when signing is configured (``MLFLOW_GREEN_SIGNING_KEY``, ``MLFLOW_GREEN_TRUSTED_KEYS``),
    before any training or check starts. A run whose signature does not verify is not an error:
    it is a failed verification (:class:`mlflow_green.record.signing.Verification`).
    """


class InferenceError(GreenError, RuntimeError):
    """The model failed while its inference energy was being measured (its exception is the cause).

    Nothing is logged to MLflow when this is raised: an evaluation either logs every inference
    figure or none.

    Example:
        >>> issubclass(InferenceError, GreenError) and issubclass(InferenceError, RuntimeError)
        True
    """


class SpoolError(GreenError, OSError):
    """A spool file cannot be used. Writers catch it and report it; it never reaches training."""


class SpoolBusyError(SpoolError):
    """A spool file is locked: its writer is still running, or another ``mlflow-green sync`` has it."""


class SpoolFormatError(SpoolError):
    """A file in the spool folder is not a readable spool file; ``mlflow-green sync`` moves it aside."""
