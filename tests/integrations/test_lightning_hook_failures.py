"""Exceptions in other code around our hooks: another callback's ``on_exception``, hooks after our ``on_fit_end``.

Lightning calls the callbacks' ``on_exception`` in turn and stops at the first that raises (skipping
the teardown hooks too): a notifier callback listed before ours whose endpoint is down left our run
``RUNNING`` and measuring, and the next fit logged into it. And a fit whose ``on_fit_end`` hooks raise
after ours (an export step that fails) raises from ``trainer.fit``: its run must say ``FAILED``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

pytest.importorskip("lightning")

import lightning  # noqa: E402
from green_invariants import assert_green_invariants  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402


class Alert(lightning.Callback):
    """Sends an alert when training fails; its endpoint is down."""

    def on_exception(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule, exception: BaseException) -> None:
        raise ConnectionError("alert endpoint unreachable")


class Export(lightning.Callback):
    """Exports the trained model at the fit's end; the model store refuses it."""

    def on_fit_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        raise OSError("export to the model store failed")


def test_an_earlier_callbacks_failing_on_exception_still_ends_our_run_failed(mlflow_experiment: str) -> None:
    train, val = loaders()
    alert, cb = Alert(), GreenCallback()
    with pytest.raises(ConnectionError):  # the 4th step of the 2nd epoch raises, then the alert does
        lightning.Trainer(max_epochs=3, callbacks=[alert, cb], **quiet_trainer_kwargs()).fit(
            digits_classifier(fail_at_epoch=1), train, val)
    client = MlflowClient()
    failed = client.get_run(cb.session.run_id)
    assert failed.info.status == "FAILED" and cb.session.tracker is None, "ended, and the meters stopped"
    assert "on_exception" not in vars(alert), "the alert callback is left as it was"
    assert [m.step for m in client.get_metric_history(failed.info.run_id, schema.ENERGY_KWH)] == [0, 1]
    assert_green_invariants(failed.info.run_id)
    lightning.Trainer(max_epochs=1, callbacks=[alert, cb], **quiet_trainer_kwargs()).fit(digits_classifier(), train, val)
    assert cb.session.run_id != failed.info.run_id, "the next fit gets a run of its own"
    assert client.get_run(cb.session.run_id).info.status == "FINISHED"
    assert client.get_run(failed.info.run_id).data.metrics == failed.data.metrics, "the failed run is left alone"
    assert "on_exception" not in vars(alert)


@pytest.mark.parametrize("order", ["export after ours", "export before ours"])
def test_a_fit_whose_on_fit_end_fails_ends_its_run_failed(mlflow_experiment: str, tmp_path: Path, order: str) -> None:
    train, val = loaders()
    cb = GreenCallback()
    callbacks = [cb, Export()] if order == "export after ours" else [Export(), cb]
    with pytest.raises(OSError, match="export"):
        lightning.Trainer(max_epochs=2, callbacks=callbacks, **quiet_trainer_kwargs()).fit(digits_classifier(), train, val)
    run = MlflowClient().get_run(cb.session.run_id)
    assert run.info.status == "FAILED" and cb.session.tracker is None
    assert [m.step for m in MlflowClient().get_metric_history(run.info.run_id, schema.ENERGY_KWH)] == [0, 1]
    assert_green_invariants(run.info.run_id)
