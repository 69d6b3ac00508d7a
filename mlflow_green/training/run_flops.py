"""The FLOPs a run's fits did: each fit's samples at its own model's FLOPs per sample (``green/flop_per_j``).

A run can hold several fits of different models (one callback given to two ``fit`` calls, two
Trainers in turn in the user's run): the run's FLOPs are the sum of each fit's, not every sample at
the last model's figure. The earlier fits' sum is carried in the run's state (checkpoints,
``green/report.json``), so that a resumed fit or another callback in the run goes on from it.

Example:
    >>> flops = RunFlops()
    >>> flops.begin_fit({})
    >>> flops.end_fit(100.0, {"train": 10})  # 3 x 100 FLOPs per training sample
    3000.0
    >>> flops.begin_fit({"train": 10})
    >>> flops.end_fit(200.0, {"train": 20})
    9000.0
"""

from __future__ import annotations

from collections.abc import Mapping

from mlflow_green.training.quality import training_flops


class RunFlops:
    """The FLOPs of the run's earlier fits, and the samples the run had when the current fit began.

    Args:
        earlier: The earlier fits' FLOPs; None when not known (a state written before they were
            kept, or a fit whose model's FLOPs were unknown): every sample then counts at the
            current model's figure, as an estimate.
    """

    def __init__(self, earlier: float | None = 0.0) -> None:
        self.earlier = earlier
        self._before: dict[str, int] = {}
        self.samples_unknown = False  # a phase of the current fit ran with its samples unknown: its FLOPs are too

    @classmethod
    def from_state(cls, flops: float | None, samples: Mapping[str, int]) -> RunFlops:
        """Go on from a state's FLOPs; one without them counts as known only if it trained nothing."""
        if flops is None and not (samples.get("train") or samples.get("validation")):
            flops = 0.0
        return cls(flops)

    def begin_fit(self, samples: Mapping[str, int]) -> None:
        """A fit begins with the run's samples so far."""
        self._before = dict(samples)
        self.samples_unknown = False

    def total(self, flops_per_sample: float | None, samples: Mapping[str, int]) -> float | None:
        """The run's FLOPs with the current fit's samples (``samples`` less those at its start) at
        ``flops_per_sample``; None when that is unknown, or the samples of a phase of the fit are."""
        if self.samples_unknown:
            return None
        if not flops_per_sample:
            return None if self.earlier is None or self._trained_since(samples) else self.earlier
        if self.earlier is None:
            return training_flops(flops_per_sample, samples)
        return self.earlier + training_flops(flops_per_sample, {k: n - self._before.get(k, 0) for k, n in samples.items()})

    def end_fit(self, flops_per_sample: float | None, samples: Mapping[str, int]) -> float | None:
        """The fit ends: its FLOPs join the earlier fits'; returns the run's."""
        self.earlier = self.total(flops_per_sample, samples)
        self._before = dict(samples)
        return self.earlier

    def _trained_since(self, samples: Mapping[str, int]) -> bool:
        return any(samples.get(k, 0) > self._before.get(k, 0) for k in ("train", "validation"))


__all__ = ["RunFlops"]
