"""What hardware this host has: CPU model, sockets, TDP, RAM and GPU names.

Every function is offline, cached where it is pure, and never raises: a value it cannot find
falls back to something safe (``"unknown CPU"``, one socket, CodeCarbon's default TDP) and
says so. The CPU TDP comes from the table CodeCarbon bundles
(``codecarbon/data/hardware/cpu_power.csv``), read as a plain CSV without importing
codecarbon, so this module stays cheap to import.

Example:
    >>> tdp_w, note = cpu_tdp_w("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz")
    >>> tdp_w
    65.0
    >>> cpu_tdp_w("Imaginary CPU 9000")[0] == DEFAULT_CPU_TDP_W
    True
"""

from __future__ import annotations

import functools
import glob
import logging
import platform
import re
import sys
from pathlib import Path
from typing import Any

from mlflow_green import codecarbon_data

logger = logging.getLogger(__name__)

DEFAULT_CPU_TDP_W = 85.0
"""TDP assumed for a CPU missing from the table (CodeCarbon's own ``POWER_CONSTANT``)."""

CPUINFO_PATH = "/proc/cpuinfo"
NVML_LIBRARY = "libnvidia-ml.so.1"
"""The library the NVIDIA driver installs on Linux, which pynvml loads."""
_TDP_TABLE_PARTS = ("data", "hardware", "cpu_power.csv")
_TOKEN_RE = re.compile(r"[a-z0-9]+(?:[-.+][a-z0-9]+)*")
# Trademark marks and filler words that CPU model strings carry but the table does not.
_NOISE_RE = re.compile(r"\((?:r|tm|c)\)|®|™")
_FILLER = frozenset({"cpu", "processor", "with", "radeon", "graphics"})


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


def _tokens(name: str) -> tuple[str, ...]:
    """Normalised tokens of a CPU name: lower case, no trademarks, no clock speed, no filler."""
    text = _NOISE_RE.sub(" ", name.lower())
    text = text.split("@", 1)[0]  # "... CPU @ 2.10GHz": the clock is not part of the model
    return tuple(t for t in _TOKEN_RE.findall(text) if t not in _FILLER)


_TdpRow = tuple[str, float]


@functools.cache
def _tdp_table() -> tuple[_TdpRow, ...]:
    """CodeCarbon's CPU TDP table as (name, tdp_w) rows; empty if it cannot be read."""
    base = codecarbon_data.package_dir()
    if base is None:
        return ()
    path = base.joinpath(*_TDP_TABLE_PARTS)
    rows: list[_TdpRow] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()[1:]  # header: Name,TDP
    except (OSError, UnicodeDecodeError) as exc:
        logger.debug("cannot read CodeCarbon's TDP table %s: %s", path, exc)
        return ()
    for line in lines:  # plain split: csv.DictReader costs ~15 ms on this 5 000-row table
        name, _, tdp = line.rpartition(",")
        try:
            tdp_w = float(tdp)
        except ValueError:
            continue
        name = name.strip().strip('"').strip()
        if name and tdp_w > 0:
            rows.append((name, tdp_w))
    return tuple(rows)


def _match(model_tokens: frozenset[str], table: tuple[_TdpRow, ...]) -> tuple[str, float] | None:
    """The longest table entry whose every token appears in the model string."""
    best: tuple[tuple[int, int], str, float] | None = None
    for name, tdp_w in table:
        # Cheap pre-filter: a matching entry's tokens are all model tokens, so at least one
        # model token is a substring of the entry's name. Tokenising every row is too slow.
        lowered = name.lower()
        if not any(token in lowered for token in model_tokens):
            continue
        tokens = _tokens(name)
        if not tokens:
            continue
        # A bare number ("6140") is an old AMD part; never let it match another vendor's CPU.
        if len(tokens) == 1 and "amd" not in model_tokens:
            continue
        if not model_tokens.issuperset(tokens):
            continue
        score = (len(tokens), len(name))
        if best is None or score > best[0]:
            best = (score, name, tdp_w)
    return None if best is None else (best[1], best[2])


@functools.cache
def cpu_tdp_w(model: str | None = None) -> tuple[float, str]:
    """The TDP of one CPU package in watts, and a one-line note of where it came from.

    Args:
        model: A CPU model string; None means this host's :func:`cpu_model`.

    Returns:
        ``(tdp_w, note)``, e.g. ``(85.0, "AMD EPYC not in CodeCarbon's TDP table — assuming
        85 W (CodeCarbon's default)")``.
    """
    model = (cpu_model() if model is None else model).strip() or "unknown CPU"
    try:
        table = _tdp_table()
        if not table:
            return DEFAULT_CPU_TDP_W, (
                f"{model}: CodeCarbon's TDP table not found — assuming {DEFAULT_CPU_TDP_W:g} W (CodeCarbon's default)"
            )
        found = _match(frozenset(_tokens(model)), table)
    except Exception as exc:  # never raise: this only feeds an estimate
        logger.debug("TDP lookup failed for %r: %s", model, exc)
        found = None
    if found is None:
        return DEFAULT_CPU_TDP_W, (
            f"{model} not in CodeCarbon's TDP table — assuming {DEFAULT_CPU_TDP_W:g} W (CodeCarbon's default)"
        )
    name, tdp_w = found
    return tdp_w, f"{model} → {tdp_w:g} W TDP (CodeCarbon {codecarbon_data.version() or '?'} table: {name!r})"


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
