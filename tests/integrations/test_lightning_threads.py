"""Lightning Trainers fitting in two threads of one process at once.

One GreenCallback given to both Trainers crashed the first fit (``TrackerStateError: end('validation') called
without a matching begin('validation')``: measurement broke training) and left the second's run without
energy. Now the Trainer's call that comes second is measured by nothing (the callback steps out of its
callbacks for that call, with a warning, and is back for its later calls); the first is measured whole. Two callbacks, one per Trainer, each measure their own fit, with
a warning that the process's energy is in both runs while they overlap.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

pytest.importorskip("lightning")

import lightning  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402
from threaded_fits import assert_each_measured_its_own, assert_the_first_measured_alone, fits_at_once, warnings_while  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402


class PauseAfterFirstEpoch(lightning.Callback):
    """Holds the first fit after its first epoch until the second fit has run."""

    def __init__(self, in_fit: threading.Event, go_on: threading.Event) -> None:
        self.in_fit, self.go_on = in_fit, go_on

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.current_epoch == 0:
            self.in_fit.set()
            assert self.go_on.wait(120)


def _fits_at_once(first: GreenCallback, second: GreenCallback, second_trainer: Any = None) -> dict[str, str]:
    """A Trainer of 3 epochs in a thread, held after its first epoch while a Trainer of 2 epochs fits in the main thread."""
    second_trainer = second_trainer or lightning.Trainer(max_epochs=2, callbacks=[second], **quiet_trainer_kwargs())
    return fits_at_once(
        lambda in_fit, go_on: lightning.Trainer(max_epochs=3, callbacks=[first, PauseAfterFirstEpoch(in_fit, go_on)],
                                                **quiet_trainer_kwargs()).fit(digits_classifier(), *loaders()),
        lambda: second_trainer.fit(digits_classifier(), *loaders()))


def test_one_callback_given_to_two_trainers_at_once_measures_the_first_and_the_second_goes_unmeasured(
        mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    second = lightning.Trainer(max_epochs=2, callbacks=[cb], **quiet_trainer_kwargs())
    warnings = warnings_while(caplog, lambda: _fits_at_once(cb, cb, second))
    assert any("measuring a Trainer in another thread; this Trainer's call (thread MainThread) goes unmeasured" in w
               for w in warnings)
    assert_the_first_measured_alone(cb, mlflow_experiment)
    assert cb in second.callbacks  # back for the Trainer's later calls: its test, alone now, is measured
    second.test(digits_classifier(), loaders()[1])
    from mlflow import MlflowClient

    from mlflow_green.record import schema

    assert schema.ENERGY_TEST_KWH in MlflowClient().get_run(cb.session.run_id).data.metrics


def test_two_callbacks_in_two_trainers_at_once_each_measure_their_own_and_say_the_energies_overlap(
        mlflow_experiment: str, caplog: pytest.LogCaptureFixture) -> None:
    first, second = GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})]), GreenCallback(meters=[FakeMeter({"cpu:0": 50.0})])
    assert_each_measured_its_own(first, second, warnings_while(caplog, lambda: _fits_at_once(first, second)))
