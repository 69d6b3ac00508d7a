"""A Lightning call outside the main thread that ends with no hook: a ``KeyboardInterrupt`` in its step.

Lightning's handler of a ``KeyboardInterrupt`` first ignores SIGINT with ``signal.signal``, which raises ``ValueError``
outside the main thread: neither ``on_exception`` nor ``teardown`` runs. The callback's run stayed ``RUNNING`` and
the thread's active run (the thread's next fit logged as its child, billed twice at exit), and a callback given to
a later call stood aside, as if still measuring that thread. Real fits and tests in real threads.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

pytest.importorskip("lightning")

import lightning  # noqa: E402
from green_invariants import assert_green_invariants  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402


def _interrupted(call: str) -> Any:
    """A digits classifier whose 3rd training (or test) step raises KeyboardInterrupt."""
    model = digits_classifier()
    step = getattr(model, f"{call}_step")

    def interrupted(batch: Any, batch_idx: int) -> Any:
        if batch_idx == 2:
            raise KeyboardInterrupt
        return step(batch, batch_idx)

    setattr(model, f"{call}_step", interrupted)
    return model


def _trainer(green: GreenCallback, tmp_path: Path) -> lightning.Trainer:
    return lightning.Trainer(max_epochs=1, limit_train_batches=5, limit_val_batches=2, default_root_dir=tmp_path,
                             callbacks=[green], **quiet_trainer_kwargs())


def _runs(experiment: str) -> dict[str, Any]:
    return {run.info.run_id: run for run in MlflowClient().search_runs([experiment])}


@pytest.mark.parametrize("call", ["fit", "test"])
def test_an_interrupt_in_a_threads_call_ends_its_run_and_frees_the_thread_and_the_callback(
        call: str, mlflow_experiment: str, tmp_path: Path) -> None:
    green = GreenCallback(meters=[FakeMeter({"cpu:0": 45.0, "ram:0": 5.0})])
    seen: dict[str, Any] = {}

    def work() -> None:
        trainer = _trainer(green, tmp_path)
        train, val = loaders()
        try:
            trainer.fit(_interrupted("training"), train, val) if call == "fit" else trainer.test(_interrupted("test"), val)
        except BaseException as exc:  # noqa: BLE001 - Lightning's ValueError, as without the callback
            seen["raised"] = exc
        seen["run"] = green.session.run_id
        time.sleep(2.5)  # the watch looks every second
        active = mlflow.active_run()
        seen["active"] = active and active.info.run_id
        other = GreenCallback(meters=[FakeMeter({"cpu:0": 45.0, "ram:0": 5.0})])  # the thread's next fit
        _trainer(other, tmp_path).fit(digits_classifier(), *loaders())
        seen["next"] = other.session.run_id

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(120)
    assert not thread.is_alive()
    assert isinstance(seen["raised"], ValueError), seen["raised"]  # Lightning's own, unchanged
    runs = _runs(mlflow_experiment)
    failed, after = runs[seen["run"]], runs[seen["next"]]
    assert failed.info.status == "FAILED"
    assert failed.info.end_time is not None and failed.info.end_time <= after.info.start_time
    assert seen["active"] is None, "the failed call's run is still the thread's active run"
    assert "mlflow.parentRunId" not in after.data.tags and after.info.status == "FINISHED"
    assert (schema.ENERGY_KWH if call == "fit" else schema.phase_energy_key("test")) in failed.data.metrics
    if call == "fit":
        assert_green_invariants(seen["run"])
    # the same callback, given to a call in the main thread at once: measured (not standing aside)
    again = _trainer(green, tmp_path)
    again.fit(digits_classifier(), *loaders())
    assert green.session.run_id not in (seen["run"], None)
    assert _runs(mlflow_experiment)[green.session.run_id].info.status == "FINISHED"
    assert mlflow.active_run() is None


def test_the_same_callback_given_to_the_main_thread_right_after_ends_the_threads_call_first(mlflow_experiment: str,
                                                                                           tmp_path: Path) -> None:
    green = GreenCallback(meters=[FakeMeter({"cpu:0": 45.0, "ram:0": 5.0})])
    seen: dict[str, Any] = {}

    def work() -> None:
        try:
            _trainer(green, tmp_path).fit(_interrupted("training"), *loaders())
        except BaseException as exc:  # noqa: BLE001
            seen["raised"] = exc
        seen["run"] = green.session.run_id

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(120)
    _trainer(green, tmp_path).fit(digits_classifier(), *loaders())  # before the watch's next look
    runs = _runs(mlflow_experiment)
    assert runs[seen["run"]].info.status == "FAILED"
    assert green.session.run_id != seen["run"] and runs[green.session.run_id].info.status == "FINISHED"
    assert_green_invariants(green.session.run_id)
