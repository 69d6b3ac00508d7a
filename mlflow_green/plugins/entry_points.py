"""Third-party plugins' entry points, discovered once and cached until the installed packages change.

Discovering entry points (``importlib.metadata``) imports about 30 modules and reads every
installed distribution's metadata: ~45 ms in a fresh process, on every ``start()``. The list of
``(name, "module:attr")`` pairs of a group is therefore kept in the cache folder
(:mod:`mlflow_green.cache_dir`), keyed by the interpreter and ``sys.path``, and trusted while
the package metadata folders on ``sys.path`` (``*.dist-info``, ``*.egg-info``) are the same ones
with the same modification times: installing, upgrading, reinstalling or removing a package
adds, replaces or removes one. Loading a cached entry point imports its module, as
``EntryPoint.load()`` does.

Example:
    >>> name, value = "my_meter", "json:dumps"
    >>> load(value) is __import__("json").dumps
    True
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from typing import Any

from mlflow_green.cache_dir import cache_dir, write_atomically

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1


def _fingerprint() -> list[list[Any]]:
    """The interpreter, and every package metadata folder on ``sys.path`` with its modification time."""
    entries: list[list[Any]] = [[sys.executable, sys.version]]
    for entry in sys.path:
        folder = entry or "."
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith((".dist-info", ".egg-info")))
        except OSError:  # a zip, a missing folder: no metadata folders of its own
            entries.append([entry])
            continue
        found: list[Any] = [entry]
        for name in names:
            try:
                found.append([name, os.stat(os.path.join(folder, name)).st_mtime_ns])
            except OSError:
                found.append([name, 0])
        entries.append(found)
    return entries


def _fnv1a(text: str) -> int:
    """A stable 64-bit hash of ``text`` (FNV-1a; ``hashlib`` would load OpenSSL, ~10 ms)."""
    value = 0xCBF29CE484222325
    for byte in text.encode():
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def _discover(group: str) -> list[tuple[str, str]]:
    from importlib.metadata import entry_points  # the slow part this module avoids when it can

    seen: dict[str, str] = {}
    for ep in entry_points(group=group):
        seen.setdefault(ep.name, ep.value)  # the first on sys.path wins, as for imports
    return sorted(seen.items())


def entry_points(group: str) -> list[tuple[str, str]]:
    """``(name, "module:attr")`` of every installed entry point in ``group``. Never raises for the cache."""
    fingerprint = _fingerprint()
    key = _fnv1a(json.dumps([group, fingerprint[0], [e[0] for e in fingerprint[1:]]]))
    path = cache_dir() / f"entry-points-{key:016x}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") == CACHE_FORMAT and data.get("fingerprint") == fingerprint:
            return [(str(name), str(value)) for name, value in data["entry_points"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = _discover(group)
    try:
        write_atomically(path, json.dumps({"format": CACHE_FORMAT, "fingerprint": fingerprint, "entry_points": found}))
    except OSError as exc:
        logger.debug("cannot cache entry points in %s: %s", path, exc)
    return found


def load(value: str) -> Any:
    """The object an entry point value (``module`` or ``module:attr.attr``) names."""
    module_name, _, attrs = value.partition(":")
    obj: Any = importlib.import_module(module_name.strip())
    for attr in filter(None, attrs.strip().split(".")):
        obj = getattr(obj, attr)
    return obj
