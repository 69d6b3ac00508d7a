"""How a training session sees the other ranks of a distributed training.

The adapter (the Lightning callback, a Hugging Face callback) fills a :class:`DistributedContext`
when the process group is known; every rank calls the session at the same points, so the
collective calls below happen on all ranks together.

Example:
    >>> ctx = DistributedContext()          # single process: nothing to gather
    >>> ctx.is_logging_rank, ctx.sum_count(1400)
    (True, 1400)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlflow_green.measure.readings import Measurement


@dataclass
class DistributedContext:
    """The ranks of one training, as the session needs them.

    Attributes:
        world_size: Number of ranks.
        hosts: Number of distinct hosts.
        is_logging_rank: True on the one rank that writes to MLflow (global rank zero).
        all_gather: A collective that returns every rank's JSON-ready object, in rank order
            (``torch.distributed.all_gather_object``); None in a single process.
        rank_totals: Each rank's own fit total, for ``report.json`` (filled at the end of a fit).
    """

    world_size: int = 1
    hosts: int = 1
    is_logging_rank: bool = True
    all_gather: Callable[[Any], list[Any]] | None = None
    rank_totals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def distributed(self) -> bool:
        """True when there are other ranks to gather from."""
        return self.all_gather is not None

    def gather(self, measurement: Measurement) -> list[Measurement]:
        """Every rank's ``measurement`` (a collective call); ``[measurement]`` in a single process."""
        if self.all_gather is None:
            return [measurement]
        return [Measurement.from_dict(part) for part in self.all_gather(measurement.to_dict())]

    def reduce(self, measurement: Measurement) -> Measurement:
        """This rank's measurement combined with every other rank's (devices de-duplicated)."""
        parts = self.gather(measurement)
        combined = parts[0] if parts else measurement
        for part in parts[1:]:
            combined = combined.merge_parallel(part)
        return combined

    def sum_count(self, count: int) -> int:
        """The sum of an integer over every rank (samples seen, steps)."""
        if self.all_gather is None:
            return int(count)
        return sum(int(part or 0) for part in self.all_gather(int(count)))

    def reduce_fit_total(self, local: Measurement) -> Measurement:
        """A fit's total over every rank; each rank's own part is kept in :attr:`rank_totals`."""
        parts = self.gather(local)
        if self.distributed:
            self.rank_totals = [
                {"rank": rank, "energy_j": part.energy_j, "duration_s": part.duration_s,
                 "devices": [d.to_dict() for d in part.devices]}
                for rank, part in enumerate(parts)
            ]
        combined = parts[0] if parts else local
        for part in parts[1:]:
            combined = combined.merge_parallel(part)
        return combined
