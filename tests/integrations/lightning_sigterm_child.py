"""Run by ``test_signals.py``: ``python lightning_sigterm_child.py WHERE OUT_DIR``.

A Lightning fit with GreenCallback into OUT_DIR/mlflow.db that writes OUT_DIR/waiting once it is inside WHERE and
then waits there for the test's SIGTERM: ``setup`` (the module's), ``configure_optimizers``, ``on_fit_start`` /
``on_fit_end`` (another callback's, listed after ours), ``bind`` (MLflow creating the callback's run in its
``on_fit_start``: ``MlflowClient.create_run`` waits 2 s after it), or ``epoch`` (a training batch: Lightning's own stretch).
``WHERE-user-handler``: the same with a SIGTERM handler of the user's set before the fit, which counts its calls into
OUT_DIR/handler_calls and returns (a graceful stop that only notes the signal: the process goes on). ``WHERE-logger``:
the Trainer logs through an ``MLFlowLogger`` into the same experiment (its run is the fit's).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

WHERE, OUT = sys.argv[1], Path(sys.argv[2])
os.environ["MLFLOW_GREEN_SPOOL_DIR"] = str(OUT / "spool")
sys.path.insert(0, str(Path(__file__).parent))

import lightning  # noqa: E402
import mlflow  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402

mlflow.set_tracking_uri(f"sqlite:///{OUT / 'mlflow.db'}")
mlflow.set_experiment(experiment_id=mlflow.create_experiment("sigterm", artifact_location=(OUT / "art").as_uri()))


def wait_for_the_signal(where: str, trainer: lightning.Trainer | None = None) -> None:
    """Wait in ``where`` for the signal (at most 30 s): until the process dies of it, the user's handler has been
    called, or (with ``trainer``) Lightning has seen it."""
    if where == WHERE.removesuffix("-user-handler").removesuffix("-logger"):
        (OUT / "waiting").write_text(where)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (trainer is not None and trainer.received_sigterm) \
                and not (OUT / "handler_calls").exists():
            time.sleep(0.05)


if WHERE.startswith("bind"):  # the signal comes while the callback waits for MLflow to create its run
    create_run = mlflow.MlflowClient.create_run

    def slow_create_run(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        run = create_run(self, *args, **kwargs)
        if not (OUT / "waiting").exists():
            (OUT / "waiting").write_text("bind")
            time.sleep(2.0)
        return run

    mlflow.MlflowClient.create_run = slow_create_run

if WHERE.endswith("-user-handler"):
    def users_handler(signum: int, frame: object) -> None:
        with open(OUT / "handler_calls", "a") as calls:
            calls.write("called\n")

    signal.signal(signal.SIGTERM, users_handler)

Base = type(digits_classifier())


class Module(Base):  # type: ignore[misc, valid-type]
    def setup(self, stage: str) -> None:
        wait_for_the_signal("setup")

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        wait_for_the_signal("configure_optimizers")
        return super().configure_optimizers()

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self.current_epoch == 1 and batch_idx == 3:
            wait_for_the_signal("epoch", self.trainer)
        return super().training_step(batch, batch_idx)


class Slow(lightning.Callback):
    def on_fit_start(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        wait_for_the_signal("on_fit_start")

    def on_fit_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        wait_for_the_signal("on_fit_end")


kwargs = quiet_trainer_kwargs()
if WHERE.endswith("-logger"):
    from lightning.pytorch.loggers import MLFlowLogger

    kwargs["logger"] = MLFlowLogger(experiment_name="sigterm", tracking_uri=mlflow.get_tracking_uri())
trainer = lightning.Trainer(max_epochs=3, callbacks=[GreenCallback(), Slow()], **kwargs)
trainer.fit(Module(), *loaders())
print("FIT RETURNED")
