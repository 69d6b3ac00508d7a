"""Where CodeCarbon's bundled data lives, and its version, found without importing CodeCarbon.

Importing CodeCarbon costs about a second and ``importlib.metadata`` tens of milliseconds;
both the carbon-intensity tables and the CPU TDP table are plain files in its package folder.

Example:
    >>> package_dir() is not None      # codecarbon is a core dependency
    True
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path


@functools.cache
def package_dir() -> Path | None:
    """CodeCarbon's package folder, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec("codecarbon")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def version() -> str | None:
    """CodeCarbon's version, read from its ``_version.py``; None when it is not installed."""
    base = package_dir()
    if base is None:
        return None
    try:
        with (base / "_version.py").open(encoding="utf-8") as f:
            for line in f:
                name, sep, value = line.partition("=")
                if sep and name.strip() == "__version__":
                    return value.strip().strip("'\"")
    except OSError:
        pass
    import importlib.metadata

    try:
        return importlib.metadata.version("codecarbon")
    except importlib.metadata.PackageNotFoundError:
        return None
