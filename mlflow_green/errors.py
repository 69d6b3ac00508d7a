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


class UnknownRegionError(ConfigError):
    """A carbon-intensity region that the bundled data does not know."""


class UnknownMeterError(ConfigError):
    """A meter name that no registered plugin provides."""


class MeterError(GreenError, RuntimeError):
    """A meter could not be read. Trackers catch it and fall back; it never reaches training."""


class TrackerStateError(GreenError, RuntimeError):
    """A tracker method was called in the wrong order (e.g. ``stop()`` before ``start()``)."""


class MissingExtraError(GreenError, ImportError):
    """An optional dependency is missing; the message names the ``pip install`` to run."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'mlflow-green[{extra}]'"
        )
        self.package = package
        self.extra = extra
