"""Run by the ddp_spawn SIGTERM test: ``python ddp_spawn_sigterm_child.py OUT_DIR``.

A ``ddp_spawn`` fit of two CPU ranks, slow enough to be stopped midway, with GreenCallback (its own run) into
OUT_DIR/mlflow.db; rank 0 writes OUT_DIR/started (the run id, the time) as epoch 1 begins. The test then sends
SIGTERM to the launching process alone, or to its whole process group (as a scheduler stopping a job does).
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
faulthandler.register(signal.SIGUSR1, all_threads=True)  # the launcher and each rank (they import this module): the
# test, given no exit after SIGTERM, asks every process of the group where it is (a hang seen once in a full suite)

import lightning  # noqa: E402
import mlflow  # noqa: E402
import torch  # noqa: E402
from ddp_spawn_train import Digits  # noqa: E402
from lightning_models import loaders, quiet_trainer_kwargs  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402


class SlowDigits(Digits):
    """Module-level (ddp_spawn pickles the model): 50 ms a step."""

    def training_step(self, batch, batch_idx):
        time.sleep(0.05)
        return super().training_step(batch, batch_idx)


class Started(lightning.Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_epoch_start(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        if trainer.current_epoch == 1 and trainer.global_rank == 0:
            green = next(c for c in trainer.callbacks if isinstance(c, GreenCallback))
            (self.out / "started").write_text(json.dumps({"run_id": green.session.run_id, "time": time.time()}))


if __name__ == "__main__":
    out = Path(sys.argv[1])
    os.environ["MLFLOW_GREEN_SPOOL_DIR"] = str(out / "spool")
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("sigterm", artifact_location=(out / "art").as_uri()))
    torch.set_num_threads(1)
    trainer = lightning.Trainer(max_epochs=50, strategy="ddp_spawn", devices=2, callbacks=[GreenCallback(), Started(out)],
                                **quiet_trainer_kwargs())
    trainer.fit(SlowDigits(), *loaders())
    print("FIT RETURNED")
