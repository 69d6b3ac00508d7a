"""CodeCarbon's power model for one machine, as values: TDP, sampled load curves, RAM power.

The estimate is CodeCarbon's own model: its CPU TDP table lookup and its fallback for CPUs it
does not know, its load curves (machine and process tracking) and its RAM rule. The model is
resolved through CodeCarbon (:mod:`mlflow_green.measure.codecarbon_model`), the load curves
sampled from CodeCarbon's own functions, and cached per machine and CodeCarbon version
(:mod:`mlflow_green.measure.model_cache`); this module only holds and evaluates it, without
importing CodeCarbon.

Example:
    >>> model = PowerModel.example()
    >>> model.cpu_power_w(0.5)          # 100 W TDP under CodeCarbon 3.3's cubic machine curve
    21.25
    >>> model.cpu_power_w(0.5, process=True)
    50.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

CACHE_FORMAT = 1
CURVE_POINTS = 101
"""Load curves are sampled at 0 %, 1 %, ... 100 % load and interpolated linearly in between."""


@dataclass(frozen=True)
class PowerModel:
    """CodeCarbon's CPU and RAM power model for one machine, with where each number came from.

    Attributes:
        codecarbon_version: The CodeCarbon release that produced the numbers (``""`` if none).
        cpu_model: The CPU model string matched against CodeCarbon's table.
        logical_cpus: CPUs CodeCarbon counts (its ``count_cpus``: threads, or a SLURM job's CPUs).
        tdp_w: Power of all the machine's CPU packages at full load, in watts.
        cpu_rule: ``table`` (CodeCarbon's CPU table), ``per-thread`` (its rule for unknown CPUs),
            ``constant`` (its last resort), ``given`` (set by the user) or ``fallback``
            (CodeCarbon could not be used).
        cpu_source: One line: the rule and its numbers.
        machine_curve: Fraction of ``tdp_w`` drawn at 0, 1, … 100 % machine load (machine scope).
        process_curve: Fraction of ``tdp_w`` billed to processes using 0, 1, … 100 % of the
            machine's CPU capacity (CodeCarbon's ``tracking_mode="process"``).
        ram_total_bytes: Memory the RAM rule was applied to.
        ram_power_w: Power of that memory, in watts.
        ram_rule: ``per-DIMM`` (CodeCarbon 3.x), ``given`` or ``fallback``.
        ram_source: One line: the rule and its numbers.
        facts: The machine facts this model was resolved for (cache validation).
    """

    codecarbon_version: str
    cpu_model: str
    logical_cpus: int
    tdp_w: float
    cpu_rule: str
    cpu_source: str
    machine_curve: tuple[float, ...]
    process_curve: tuple[float, ...]
    ram_total_bytes: int
    ram_power_w: float
    ram_rule: str
    ram_source: str
    facts: Mapping[str, Any] = field(default_factory=dict)

    @staticmethod
    def example() -> PowerModel:
        """A 100 W, 8-thread, 16 GiB model with CodeCarbon 3.3's curves (for docs and tests)."""
        return PowerModel(
            codecarbon_version="3.3",
            cpu_model="Example CPU",
            logical_cpus=8,
            tdp_w=100.0,
            cpu_rule="given",
            cpu_source="100 W (given)",
            machine_curve=sample_curve(lambda load: 0.1 + 0.9 * load**3),
            process_curve=sample_curve(lambda load: load),
            ram_total_bytes=16 * 2**30,
            ram_power_w=10.0,
            ram_rule="given",
            ram_source="10 W (given)",
        )

    # -- evaluating ------------------------------------------------------------------------

    def cpu_power_w(self, load: float, *, process: bool = False) -> float:
        """CPU power at ``load`` (0–1): the machine's (machine curve) or a process's (process curve)."""
        return self.tdp_w * interpolate(self.process_curve if process else self.machine_curve, load)

    def with_tdp(self, tdp_w: float) -> PowerModel:
        """The same model with a user-given TDP for all packages together."""
        return replace(self, tdp_w=float(tdp_w), cpu_rule="given", cpu_source=f"{tdp_w:g} W TDP (given)")

    def with_ram_power(self, ram_power_w: float) -> PowerModel:
        """The same model with a user-given RAM power."""
        return replace(self, ram_power_w=float(ram_power_w), ram_rule="given", ram_source=f"{ram_power_w:g} W (given)")

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for ``doctor`` and ``report.json``."""
        return {
            "source": f"CodeCarbon {self.codecarbon_version}" if self.codecarbon_version else "mlflow-green fallback",
            "cpu": {"model": self.cpu_model, "tdp_w": self.tdp_w, "rule": self.cpu_rule, "detail": self.cpu_source},
            "cpu_load_curve": {
                "machine": {f"{p}%": round(self.cpu_power_w(p / 100), 3) for p in (0, 25, 50, 75, 100)},
                "process": {f"{p}%": round(self.cpu_power_w(p / 100, process=True), 3) for p in (0, 25, 50, 75, 100)},
            },
            "ram": {"total_bytes": self.ram_total_bytes, "power_w": self.ram_power_w, "rule": self.ram_rule,
                    "detail": self.ram_source},
        }

    # -- (de)serialising -------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The cache file's content."""
        data = asdict(self)
        data["facts"] = dict(self.facts)
        return {"format": CACHE_FORMAT, **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PowerModel:
        """Inverse of :meth:`to_json`; raises ``KeyError``/``TypeError``/``ValueError`` on a bad file."""
        if data.get("format") != CACHE_FORMAT:
            raise ValueError(f"cache format {data.get('format')!r}, expected {CACHE_FORMAT}")
        curves = {k: tuple(float(v) for v in data[k]) for k in ("machine_curve", "process_curve")}
        if any(len(c) != CURVE_POINTS or not all(v >= 0 for v in c) for c in curves.values()):
            raise ValueError("malformed load curve")
        model = cls(
            codecarbon_version=str(data["codecarbon_version"]),
            cpu_model=str(data["cpu_model"]),
            logical_cpus=int(data["logical_cpus"]),
            tdp_w=float(data["tdp_w"]),
            cpu_rule=str(data["cpu_rule"]),
            cpu_source=str(data["cpu_source"]),
            ram_total_bytes=int(data["ram_total_bytes"]),
            ram_power_w=float(data["ram_power_w"]),
            ram_rule=str(data["ram_rule"]),
            ram_source=str(data["ram_source"]),
            facts=dict(data.get("facts") or {}),
            **curves,
        )
        if not (model.tdp_w > 0 and model.ram_power_w >= 0 and model.logical_cpus >= 1):
            raise ValueError("non-physical values")
        return model


def sample_curve(function: Any) -> tuple[float, ...]:
    """``function(load)`` at loads 0, 0.01, … 1 (what the cache stores)."""
    return tuple(round(float(function(i / (CURVE_POINTS - 1))), 9) for i in range(CURVE_POINTS))


def interpolate(curve: Sequence[float], load: float) -> float:
    """A sampled curve at ``load`` (clamped to 0–1), linearly interpolated.

    Example:
        >>> interpolate([0.0, 1.0], 0.25)
        0.25
    """
    if load != load or load <= 0:  # NaN or idle
        return float(curve[0])
    position = min(load, 1.0) * (len(curve) - 1)
    low = int(position)
    if low >= len(curve) - 1:
        return float(curve[-1])
    return float(curve[low] + (curve[low + 1] - curve[low]) * (position - low))
