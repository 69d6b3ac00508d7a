"""Small argument checks shared by the public entry points: wrong input fails at construction,
with the argument's name, what was given and what is accepted.

Example:
    >>> check_bool("live_metrics", None, optional=True)
    >>> check_bool("live_metrics", "yes")
    Traceback (most recent call last):
    ...
    mlflow_green.errors.ConfigError: live_metrics must be True or False, got 'yes'
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

from mlflow_green.errors import ConfigError


def check_bool(name: str, value: Any, *, optional: bool = False) -> None:
    """``value`` is a bool (or None when ``optional``)."""
    if value is None and optional:
        return
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False{' (or None)' if optional else ''}, got {value!r}")


def check_name(name: str, value: Any, *, example: str, optional: bool = True) -> None:
    """``value`` is a non-blank string (or None when ``optional``)."""
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string such as {example!r}, got {value!r}")


def check_positive_int(name: str, value: Any, *, optional: bool = True) -> None:
    """``value`` is an integer > 0 (or None when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer{' or None' if optional else ''}, got {value!r}")


def parse_env_number(raw: str, var: str, rule: str, valid: Callable[[float], bool]) -> float:
    """Parse a number from an environment variable; errors quote the variable and its text."""
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"Environment variable {var}={raw!r} is not a number; {rule}.") from None
    if not valid(value):
        raise ConfigError(f"Environment variable {var}={raw!r} is out of range; {rule}.")
    return value
