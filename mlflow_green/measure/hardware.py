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
import glob
import logging
import platform
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
        for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology/physical_package_id"):
            try:
                ids.add(Path(path).read_text().strip())
            except OSError:
                continue
    return max(len(ids), 1)


@functools.cache
def total_ram_bytes() -> int:
    """Installed RAM in bytes (0 if it cannot be read)."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:
        return 0


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


@functools.cache
def nvml_library_error() -> str | None:
    """Why the NVIDIA driver's NVML library cannot be loaded here, or None if it can (or may).

    A cheap probe with ``ctypes`` so that machines without an NVIDIA driver never import
    ``pynvml``. Only Linux is probed; elsewhere pynvml's own loader decides.

    Example:
        >>> nvml_library_error() is None or "libnvidia-ml" in nvml_library_error()
        True
    """
    if not sys.platform.startswith("linux"):
        return None
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
