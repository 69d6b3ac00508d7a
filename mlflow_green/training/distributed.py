"""How a training session sees the other ranks of a distributed training.

The adapter (the Lightning callback, a Hugging Face callback) fills a :class:`DistributedContext`
when the process group is known; every rank calls the session at the same points, so the
collective calls below happen on all ranks together. Each exchange is one ``all_gather`` of a
small JSON-ready dict: the window measurements of this rank and its sample counts.

Example:
    >>> ctx = DistributedContext()          # single process: nothing to gather
    >>> measurements, counts = ctx.combine({"epoch": Measurement(1.0)}, {"train": 1400})
    >>> ctx.is_logging_rank, counts
    (True, {'train': 1400})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow_green.measure.readings import Measurement

RankPart = tuple[dict[str, Measurement], dict[str, int]]


@dataclass
class DistributedContext:
    """The ranks of one training, as the session needs them.

    Attributes:
        world_size: Number of ranks.
        hosts: Number of distinct hosts.
        is_logging_rank: True on the one rank that writes to MLflow (global rank zero).
        all_gather: A collective that returns every rank's picklable object, in rank order
            (``torch.distributed.all_gather_object``); None in a single process.
        rank_totals: Each rank's own fit total, for ``report.json`` (filled at the end of a fit).
        gathered_at_end: False when a fit or evaluation failed: its end was not gathered from the
            other ranks (a collective at a failure can hang), only the last epoch end's was.
    """

    world_size: int = 1
    hosts: int = 1
    is_logging_rank: bool = True
    all_gather: Callable[[Any], list[Any]] | None = None
    rank_totals: list[dict[str, Any]] = field(default_factory=list)
    gathered_at_end: bool = True

    @property
    def distributed(self) -> bool:
        """True when there are other ranks to gather from."""
        return self.all_gather is not None

    def exchange(self, measurements: Mapping[str, Measurement], counts: Mapping[str, int]) -> list[RankPart]:
        """Every rank's named measurements and counts (one collective call), in rank order."""
        if self.all_gather is None:
            return [(dict(measurements), {k: int(v) for k, v in counts.items()})]
        payload = {"m": {k: m.to_dict() for k, m in measurements.items()}, "n": {k: int(v) for k, v in counts.items()}}
        return [
            ({k: Measurement.from_dict(m) for k, m in part["m"].items()}, {k: int(v) for k, v in part["n"].items()})
            for part in self.all_gather(payload)
        ]

    def combine(self, measurements: Mapping[str, Measurement], counts: Mapping[str, int]) -> tuple[dict[str, Measurement], dict[str, int]]:
        """Each measurement over every rank (devices de-duplicated) and each count summed (one collective)."""
        return merge_parts(self.exchange(measurements, counts))

    def reduce(self, measurement: Measurement) -> Measurement:
        """This rank's measurement combined with every other rank's."""
        return self.combine({"m": measurement}, {})[0]["m"]

    def sum_count(self, count: int) -> int:
        """The sum of an integer over every rank (a collective call)."""
        return self.combine({}, {"n": int(count)})[1].get("n", 0)

    def record_rank_totals(self, parts: list[RankPart], name: str) -> None:
        """Keep each rank's own ``name`` measurement for ``report.json``."""
        if not self.distributed:
            return
        self.rank_totals = [
            {"rank": rank, "energy_j": m[name].energy_j, "duration_s": m[name].duration_s,
             "devices": [d.to_dict() for d in m[name].devices]}
            for rank, (m, _) in enumerate(parts) if name in m
        ]


def merge_parts(parts: list[RankPart]) -> tuple[dict[str, Measurement], dict[str, int]]:
    """Merge per-rank measurements (parallel windows: devices de-duplicated) and sum the counts."""
    measurements: dict[str, Measurement] = {}
    counts: dict[str, int] = {}
    for rank_measurements, rank_counts in parts:
        for name, m in rank_measurements.items():
            measurements[name] = measurements[name].merge_parallel(m) if name in measurements else m
        for name, n in rank_counts.items():
            counts[name] = counts.get(name, 0) + n
    return measurements, counts
