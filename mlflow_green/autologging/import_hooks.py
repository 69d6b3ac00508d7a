"""Run a function when a module is imported — or now, if it already is.

``mlflow_green.autolog()`` must not import a framework (importing mlflow-green stays light, and a
framework that is not installed is skipped silently), yet it must reach the framework's classes
the moment the user imports it. A finder on ``sys.meta_path`` wraps the loader of the watched
modules; after the module's code ran, the hooks run (each at most once per module object), then
the original loader is put back on the module.

Example::

    when_imported("keras", lambda module: print("keras is here:", module.__name__))
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

Hook = Callable[[ModuleType], None]

_hooks: dict[str, list[Hook]] = {}
_lock = threading.RLock()
_searching = threading.local()


def when_imported(module_name: str, hook: Hook) -> None:
    """Call ``hook(module)`` once ``module_name`` is imported (at once if it already is).

    A hook that raises is logged and ignored: it never breaks the user's import.
    """
    with _lock:
        _install_finder()
        _hooks.setdefault(module_name, [])
        if hook not in _hooks[module_name]:
            _hooks[module_name].append(hook)
        module = sys.modules.get(module_name)
    if module is not None and _fully_loaded(module):
        _run(module_name, module, [hook])


def forget(hook: Hook) -> None:
    """Stop calling ``hook`` on future imports."""
    with _lock:
        for hooks in _hooks.values():
            if hook in hooks:
                hooks.remove(hook)


def _fully_loaded(module: ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    return not getattr(spec, "_initializing", False)


def _run(name: str, module: ModuleType, hooks: list[Hook]) -> None:
    for hook in hooks:
        try:
            hook(module)
        except Exception as exc:  # never break the user's import
            logger.warning("mlflow-green: autolog hook for %s failed: %s", name, exc)


class _HookedLoader(importlib.abc.Loader):
    """The module's own loader, then the hooks; every other attribute is the original loader's."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._loader, attribute)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        try:
            self._loader.exec_module(module)
        finally:
            # put the real loader back: importlib.resources, inspect and pkgutil ask it for files
            if getattr(module, "__loader__", None) is self:
                module.__loader__ = self._loader
            spec = getattr(module, "__spec__", None)
            if spec is not None and spec.loader is self:
                spec.loader = self._loader
        loaded = sys.modules.get(self._name, module)  # a package may replace itself (lazy modules)
        with _lock:
            hooks = list(_hooks.get(self._name, ()))
        _run(self._name, loaded, hooks)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        with _lock:
            watched = bool(_hooks.get(fullname))
        if not watched or fullname in getattr(_searching, "names", ()):
            return None
        names = _searching.__dict__.setdefault("names", set())
        names.add(fullname)
        try:  # ask the other finders (this one steps aside for the nested search)
            spec = importlib.util.find_spec(fullname)
        except Exception:
            return None
        finally:
            names.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = _HookedLoader(spec.loader, fullname)
        return spec


_FINDER = _PostImportFinder()


def _install_finder() -> None:
    if not any(isinstance(finder, _PostImportFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FINDER)
