"""The MLflow step of each epoch: ``step = epoch``, and a later fit in the same run continues after the last step.

Example:
    >>> steps = StepCounter()
    >>> steps.begin_fit(first_epoch=0); [steps.step_for(e) for e in (0, 1)]
    [0, 1]
    >>> steps.begin_fit(first_epoch=0); steps.step_for(0)   # a second fit in the same run
    2
"""

from __future__ import annotations


class StepCounter:
    """Steps of the epochs logged into one run.

    Attributes:
        last_step: The highest step logged so far (None before the first).
    """

    def __init__(self, last_step: int | None = None) -> None:
        self.last_step = last_step
        self.offset = 0

    def begin_fit(self, first_epoch: int) -> None:
        """A fit starts at ``first_epoch``: if that step was used already, shift after the last one."""
        self.offset = 0
        if self.last_step is not None and first_epoch <= self.last_step:
            self.offset = self.last_step + 1 - int(first_epoch)

    def step_for(self, epoch: int) -> int:
        """The step of ``epoch`` (recorded as used)."""
        step = int(epoch) + self.offset
        self.last_step = step if self.last_step is None else max(self.last_step, step)
        return step

    def peek(self, epoch: int) -> int:
        """The step ``epoch`` will have, without recording it."""
        return int(epoch) + self.offset

    @property
    def next_step(self) -> int:
        """The step after the last one logged (0 before the first)."""
        return self.last_step + 1 if self.last_step is not None else 0

    @property
    def current(self) -> int:
        """The last step logged, or 0 before the first."""
        return self.last_step if self.last_step is not None else 0
