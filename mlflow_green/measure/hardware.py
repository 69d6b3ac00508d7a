"""What hardware this host has: CPU model, sockets, RAM and GPU names.

Every function is offline, cached where it is pure, and never raises: a value it cannot find
falls back to something safe (``"unknown CPU"``, one socket, 0 bytes). The CPU's power (TDP)
is CodeCarbon's business: see :mod:`mlflow_green.measure.power_model`.

Example:
    >>> cpu_sockets() >= 1
    True
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CPUINFO_PATH = "/proc/cpuinfo"
NVML_LIBRARY = "libnvidia-ml.so.1"
"""The library the NVIDIA driver installs on Linux, which pynvml loads."""


def _read_cpuinfo() -> str:
    try:
        return Path(CPUINFO_PATH).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


@functools.cache
def cpu_model() -> str:
    """The CPU model name, e.g. ``"Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz"``.

    Read from ``/proc/cpuinfo`` (``model name``); falls back to ``platform.processor()``
    and finally to ``"unknown CPU"``.
    """
    for line in _read_cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "model name" and value.strip():
            return value.strip()
    try:
        import platform  # only off Linux: ~1 ms on the start path otherwise

        return platform.processor().strip() or "unknown CPU"
    except Exception:  # platform probing may shell out on some systems
        return "unknown CPU"


@functools.cache
def cpu_sockets() -> int:
    """The number of physical CPU packages (sockets); 1 when it cannot be told."""
    ids = {
        value.strip()
        for key, _, value in (line.partition(":") for line in _read_cpuinfo().splitlines())
        if key.strip().lower() == "physical id"
    }
    if not ids:
        import glob

        for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology/physical_package_id"):
            try:
                ids.add(Path(path).read_text().strip())
            except OSError:
                continue
    return max(len(ids), 1)


@functools.cache
def total_ram_bytes() -> int:
    """Installed RAM in bytes (0 if it cannot be read)."""
    from mlflow_green.measure import procfs

    return procfs.total_ram_bytes()


def text(value: Any) -> str:
    """NVML strings are ``bytes`` in old pynvml releases and ``str`` in new ones."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def gpu_names(nvml: Any | None = None) -> list[str]:
    """Names of the NVIDIA GPUs on this host, best effort; ``[]`` on any failure.

    Args:
        nvml: A ``pynvml``-compatible module (injected in tests); None imports ``pynvml``.
    """
    if nvml is None:
        return list(_default_gpu_names())
    return _gpu_names(nvml)


LIBRARY_DIRS: tuple[str, ...] = (
    "/lib", "/usr/lib", "/lib64", "/usr/lib64", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/wsl/lib",
)
"""Folders the dynamic loader searches by default (besides ``LD_LIBRARY_PATH`` and ``/etc/ld.so.cache``)."""


def find_library(name: str, ld_cache: str = "/etc/ld.so.cache", dirs: tuple[str, ...] = LIBRARY_DIRS) -> bool:
    """Whether the dynamic loader could find library ``name``: ``LD_LIBRARY_PATH``, its cache, default folders.

    A file-system search in the loader's order, so that machines without the library need not
    import ``ctypes`` to find out.

    Example:
        >>> find_library("libnot-a-real-library.so.9")
        False
    """
    for folder in os.environ.get("LD_LIBRARY_PATH", "").split(":") + list(dirs):
        if folder and os.path.exists(os.path.join(folder, name)):
            return True
    try:
        with open(ld_cache, "rb") as f:
            return name.encode() in f.read()
    except OSError:
        return False


@functools.cache
def nvml_library_error() -> str | None:
    """Why the NVIDIA driver's NVML library cannot be loaded here, or None if it can (or may).

    A cheap probe, so that machines without an NVIDIA driver never import ``pynvml``: the
    library is looked for where the dynamic loader looks (no ``ctypes`` needed when it is
    absent), then loaded with ``ctypes`` if found. Only Linux is probed; elsewhere pynvml's own
    loader decides.

    Example:
        >>> nvml_library_error() is None or "libnvidia-ml" in nvml_library_error()
        True
    """
    if not sys.platform.startswith("linux"):
        return None
    if not find_library(NVML_LIBRARY):
        return f"{NVML_LIBRARY} cannot be loaded: not found in LD_LIBRARY_PATH, /etc/ld.so.cache or {LIBRARY_DIRS[1]}"
    import ctypes

    try:
        ctypes.CDLL(NVML_LIBRARY)
    except OSError as exc:
        return f"{NVML_LIBRARY} cannot be loaded: {exc}"
    return None


@functools.cache
def _default_gpu_names() -> tuple[str, ...]:
    if nvml_library_error() is not None:
        return ()
    try:
        import pynvml
    except Exception:
        return ()
    return tuple(_gpu_names(pynvml))


def _gpu_names(nvml: Any) -> list[str]:
    try:
        nvml.nvmlInit()
    except Exception:
        return []
    try:
        return [
            text(nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i)))
            for i in range(int(nvml.nvmlDeviceGetCount()))
        ]
    except Exception:
        return []
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def summarise_names(names: list[str]) -> str:
    """``2x NVIDIA H100, NVIDIA A10`` from a list of device names (empty for none).

    Example:
        >>> summarise_names(["H100", "H100", "A10"])
        '2x H100, A10'
    """
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n}x {name}" if n > 1 else name for name, n in counts.items())
