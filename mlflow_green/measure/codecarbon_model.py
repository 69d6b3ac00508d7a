"""Resolves a :class:`~mlflow_green.measure.power_model.PowerModel` through CodeCarbon itself.

This is the only module that imports CodeCarbon for the estimate, and it runs once per machine
and CodeCarbon version (the result is cached). Every number comes from CodeCarbon's own code:

* **CPU TDP**: CodeCarbon's table (``DataSource().get_cpu_power_data()``) and its fuzzy match
  (``TDP._get_matching_cpu``); for a CPU it does not know, its rule of
  ``DEFAULT_POWER_PER_CORE`` watts per thread × ``count_cpus()``; without psutil, its
  ``POWER_CONSTANT``. This is the order of ``codecarbon.core.cpu.TDP``; the CPU model string is
  the one ``/proc/cpuinfo`` gives (what CodeCarbon's ``cpuinfo`` probe reads on Linux), which
  spares the 1.5 s ``cpuinfo`` subprocess. mlflow-green multiplies a table TDP (one package) by
  the number of sockets; CodeCarbon does not.
* **Load curves**: ``CPU._get_power_from_cpu_load`` evaluated at 0–100 % load with a 1 W TDP,
  in ``tracking_mode="machine"`` (a fixed system load) and ``"process"`` (a fixed process CPU time).
* **RAM**: ``RAM._calculate_ram_power`` (the per-DIMM rule of CodeCarbon 3.x) on the machine's
  memory (``RAM.machine_memory_GB``: installed RAM, or a SLURM job's).

If CodeCarbon cannot be imported or its internals changed, a ``fallback`` model is returned
(CodeCarbon 3.3's rules, written out here) and labelled as such; it is never cached.

Example:
    >>> model = resolve(cpu_model="Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", logical_cpus=12,
    ...                 ram_total_bytes=32 * 2**30, sockets=1)
    >>> model.tdp_w, model.cpu_rule, model.ram_power_w
    (65.0, 'table', 20.0)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from mlflow_green import codecarbon_data
from mlflow_green.measure import hardware
from mlflow_green.measure.power_model import PowerModel, sample_curve

logger = logging.getLogger(__name__)

BYTES_PER_GIB = 2**30
_SPAN_S = 1e9  # process-curve sampling: a long fake interval makes clock jitter negligible (< 1e-13)


class _FixedLoad:
    """Stands in for CodeCarbon's system-load meter: always answers one load percentage."""

    def __init__(self, percent: float) -> None:
        self.value = percent

    def percent(self, prime_interval: float = 0.0) -> float:
        return self.value

    def reset(self) -> None:
        pass


def resolve(
    facts: Mapping[str, Any] | None = None,
    *,
    cpu_model: str | None = None,
    logical_cpus: int | None = None,
    ram_total_bytes: int | None = None,
    sockets: int | None = None,
) -> PowerModel:
    """CodeCarbon's model for this machine, or for the one described by the arguments. Never raises.

    Args:
        facts: The machine facts to record with the model (cache validation).
        cpu_model: CPU model string; None reads this machine's.
        logical_cpus: Threads; None asks CodeCarbon (``count_cpus``).
        ram_total_bytes: Memory; None asks CodeCarbon (``RAM.machine_memory_GB``).
        sockets: CPU packages; None counts this machine's.
    """
    model = cpu_model if cpu_model is not None else hardware.cpu_model()
    sockets = sockets if sockets is not None else hardware.cpu_sockets()
    try:
        return _resolve(dict(facts or {}), model, logical_cpus, ram_total_bytes, sockets)
    except Exception as exc:  # CodeCarbon missing, or its internals changed: say so, never crash
        logger.warning("mlflow-green: CodeCarbon's power model could not be resolved (%r); using the fallback", exc)
        return _fallback(dict(facts or {}), model, logical_cpus, ram_total_bytes, repr(exc))


def _resolve(
    facts: dict[str, Any], model: str, logical_cpus: int | None, ram_total_bytes: int | None, sockets: int
) -> PowerModel:
    # CodeCarbon logs warnings for unknown CPUs at import and lookup time: keep them out of the user's log.
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    from codecarbon.core import cpu as cc_cpu
    from codecarbon.core.util import count_cpus
    from codecarbon.external.hardware import CPU, MODE_CPU_LOAD, POWER_CONSTANT
    from codecarbon.external.ram import RAM
    from codecarbon.input import DataSource

    version = codecarbon_data.version() or "?"
    threads = int(logical_cpus if logical_cpus is not None else count_cpus())

    table = DataSource().get_cpu_power_data()
    tdp_lookup = cc_cpu.TDP.__new__(cc_cpu.TDP)  # its lookup methods need no probe of this machine
    matched = tdp_lookup._get_matching_cpu(model, table)
    if matched:
        package_w = float(cc_cpu.TDP._get_cpu_constant_power(matched, table))
        tdp_w, rule = package_w * sockets, "table"
        source = f"CodeCarbon {version} CPU table: {model!r} matches {matched!r}, {package_w:g} W per package"
        if sockets > 1:
            source += f" × {sockets} sockets = {tdp_w:g} W"
    elif cc_cpu.is_psutil_available():
        tdp_w, rule = float(threads * cc_cpu.DEFAULT_POWER_PER_CORE), "per-thread"
        source = (
            f"CodeCarbon {version}: {model!r} is not in its CPU table; its rule for unknown CPUs is "
            f"{cc_cpu.DEFAULT_POWER_PER_CORE:g} W per thread × {threads} threads = {tdp_w:g} W"
        )
    else:
        tdp_w, rule = float(POWER_CONSTANT), "constant"
        source = f"CodeCarbon {version}: {model!r} unknown and no CPU load available; its constant {tdp_w:g} W"

    machine_cpu = CPU("/tmp", MODE_CPU_LOAD, model, 1, tracking_mode="machine")

    def machine_fraction(load: float) -> float:
        machine_cpu._cpu_load_meter = _FixedLoad(load * 100.0)
        return float(machine_cpu._get_power_from_cpu_load().W)

    process_cpu = CPU("/tmp", MODE_CPU_LOAD, model, 1, tracking_mode="process")
    process_cpu._cpu_count = threads

    def process_fraction(load: float) -> float:
        process_cpu._last_measurement_time = time.time() - _SPAN_S
        process_cpu._last_cpu_times = {0: 0.0}
        process_cpu._get_process_cpu_times = lambda: {0: load * _SPAN_S * threads}
        return float(process_cpu._get_power_from_cpu_load().W)

    ram = RAM(tracking_mode="machine")
    ram_gib = ram_total_bytes / BYTES_PER_GIB if ram_total_bytes is not None else float(ram.machine_memory_GB)
    ram_w = float(ram._calculate_ram_power(ram_gib))
    dimms = int(ram._estimate_dimm_count(ram_gib))
    kind = "ARM" if ram.is_arm_cpu else "x86"
    return PowerModel(
        codecarbon_version=version,
        cpu_model=model,
        logical_cpus=threads,
        tdp_w=tdp_w,
        cpu_rule=rule,
        cpu_source=source,
        machine_curve=sample_curve(machine_fraction),
        process_curve=sample_curve(process_fraction),
        ram_total_bytes=int(round(ram_gib * BYTES_PER_GIB)),
        ram_power_w=ram_w,
        ram_rule="per-DIMM",
        ram_source=(
            f"CodeCarbon {version} per-DIMM rule: {ram_gib:.1f} GiB → {dimms} DIMMs estimated ({kind}) → {ram_w:g} W"
        ),
        facts=facts,
    )


def _fallback(
    facts: dict[str, Any], model: str, logical_cpus: int | None, ram_total_bytes: int | None, error: str
) -> PowerModel:
    """CodeCarbon 3.3's rules written out, for when CodeCarbon itself cannot be used (labelled ``fallback``)."""
    import os

    threads = int(logical_cpus or os.cpu_count() or 1)
    ram_bytes = ram_total_bytes if ram_total_bytes is not None else hardware.total_ram_bytes()
    ram_gib = ram_bytes / BYTES_PER_GIB
    dimms = max(2, math.ceil(ram_gib / 16))
    return PowerModel(
        codecarbon_version="",
        cpu_model=model,
        logical_cpus=threads,
        tdp_w=4.0 * threads,
        cpu_rule="fallback",
        cpu_source=f"CodeCarbon unavailable ({error}): 4 W per thread × {threads} threads (CodeCarbon 3.3's rule)",
        machine_curve=sample_curve(lambda load: 0.1 + 0.9 * load**3),
        process_curve=sample_curve(lambda load: load),
        ram_total_bytes=int(ram_bytes),
        ram_power_w=5.0 * dimms,
        ram_rule="fallback",
        ram_source=f"CodeCarbon unavailable: 5 W per 16 GiB DIMM, at least 2 ({ram_gib:.1f} GiB → {5.0 * dimms:g} W)",
        facts=facts,
    )
