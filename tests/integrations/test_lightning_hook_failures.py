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


class Notify(lightning.Callback):
    """A notifier written as a staticmethod hook (Lightning looks it up on the instance)."""

    seen: list[str] = []

    @staticmethod
    def on_exception(trainer: lightning.Trainer, pl_module: lightning.LightningModule, exception: BaseException) -> None:
        Notify.seen.append(repr(exception))


class SetsItsOwnHook(lightning.Callback):
    """Sets its ``on_exception`` on the instance (its class keeps Lightning's no-op); it raises."""

    def __init__(self) -> None:
        self.on_exception = self.alert

    def alert(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule, exception: BaseException) -> None:
        raise ConnectionError("alert endpoint unreachable")


def test_earlier_hooks_of_any_form_are_called_as_lightning_calls_them_and_left_as_they_were(mlflow_experiment: str) -> None:
    train, val = loaders()
    Notify.seen.clear()
    notify, own, cb = Notify(), SetsItsOwnHook(), GreenCallback()
    with pytest.raises(ConnectionError):  # the user's error went to the staticmethod hook, then the alert raised
        lightning.Trainer(max_epochs=2, callbacks=[notify, own, cb], **quiet_trainer_kwargs()).fit(
            digits_classifier(fail_at_epoch=1), train, val)
    assert Notify.seen == ["RuntimeError('loss exploded')"]
    assert MlflowClient().get_run(cb.session.run_id).info.status == "FAILED" and cb.session.tracker is None
    assert "on_exception" not in vars(notify) and vars(own)["on_exception"] == own.alert


def test_a_probe_fits_failure_through_a_shared_alert_callback_leaves_the_outer_run_alone(mlflow_experiment: str) -> None:
    """One alerting instance listed before the GreenCallbacks of an outer fit and of a probe fit run inside it:
    the probe fails (the outer fit catches it and goes on); only the probe's run fails."""
    train, val = loaders()
    alert, outer, probes = Alert(), GreenCallback(run_name="outer"), []

    class Diverges(lightning.Callback):
        def on_train_batch_end(self, trainer: lightning.Trainer, *args: object) -> None:
            raise RuntimeError("probe diverged")

    class Probe(lightning.Callback):
        def on_train_epoch_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
            if trainer.current_epoch == 0:
                probes.append(GreenCallback(run_name="probe"))
                with pytest.raises(ConnectionError):
                    lightning.Trainer(max_epochs=1, limit_train_batches=2, callbacks=[alert, probes[-1], Diverges()],
                                      **quiet_trainer_kwargs()).fit(digits_classifier(), train, val)

    lightning.Trainer(max_epochs=3, limit_train_batches=5, callbacks=[alert, outer, Probe()], **quiet_trainer_kwargs()).fit(
        digits_classifier(), train, val)
    client = MlflowClient()
    assert client.get_run(outer.session.run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(outer.session.run_id, schema.ENERGY_KWH)] == [0, 1, 2]
    [probe] = probes
    assert client.get_run(probe.session.run_id).info.status == "FAILED"
    assert client.get_run(probe.session.run_id).data.tags["mlflow.parentRunId"] == outer.session.run_id
    assert "on_exception" not in vars(alert)


def test_a_copy_taken_during_fit_validates_into_a_run_of_its_own(mlflow_experiment: str) -> None:
    import copy

    train, val = loaders()
    cb, copies = GreenCallback(), []

    class Snapshot(lightning.Callback):
        def on_train_epoch_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
            copies.append(copy.deepcopy(cb))

    model = digits_classifier()
    lightning.Trainer(max_epochs=1, callbacks=[cb, Snapshot()], **quiet_trainer_kwargs()).fit(model, train, val)
    [during] = copies
    lightning.Trainer(callbacks=[during], **quiet_trainer_kwargs()).validate(model, val)
    client = MlflowClient()
    assert during.session.run_id not in (None, cb.session.run_id)
    assert client.get_run(during.session.run_id).data.metrics[schema.phase_energy_key("validate")] > 0
    assert schema.phase_energy_key("validate") not in client.get_run(cb.session.run_id).data.metrics
