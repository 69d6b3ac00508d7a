"""Whether autologging is on, and the callback options it was given.

Example:
    >>> is_enabled()
    False
"""

from __future__ import annotations

import inspect
import logging
import threading
from typing import Any

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_enabled = False
_options: dict[str, Any] = {}


def is_enabled() -> bool:
    """True between ``mlflow_green.autolog()`` and ``mlflow_green.autolog(disable=True)``."""
    return _enabled


def configure(enabled: bool, options: dict[str, Any]) -> None:
    """Set the state (called by ``autolog`` only, after the options were validated)."""
    global _enabled, _options
    with _lock:
        _enabled = enabled
        _options = dict(options)


def options() -> dict[str, Any]:
    """The callback options given to ``autolog`` (a copy)."""
    return dict(_options)


def options_for(callback_class: type) -> dict[str, Any]:
    """The options ``callback_class`` accepts (every GreenCallback takes them all; a third-party subclass may not)."""
    accepted = inspect.signature(callback_class.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return options()
    dropped = sorted(key for key in _options if key not in accepted)
    if dropped:
        logger.warning("mlflow-green: %s.%s has no option %s; autolog leaves it out for this training",
                       callback_class.__module__, callback_class.__qualname__, ", ".join(dropped))
    return {key: value for key, value in _options.items() if key in accepted}
