"""Run by the ddp_spawn tests: ``python ddp_spawn_train.py OUT_DIR [users-run|own-run-then-test]``.

``users-run`` (default): in the user's own MLflow run (tracking URI and experiment set here, in the
launching process only): one single-process fit, then a ``ddp_spawn`` fit of two CPU ranks with the
same callback. The spawned ranks unpickle the callback; its state (run, totals, steps) must carry over.

``own-run-then-test``: no active run: a ``ddp_spawn`` fit (the callback's own run), then ``trainer.test``
(spawned again), then a test on one device in this process. The launcher's callback must know the fit's
run, and both tests log into it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import lightning  # noqa: E402
import mlflow  # noqa: E402
import torch  # noqa: E402
from lightning_models import loaders, quiet_trainer_kwargs  # noqa: E402
from torch import nn  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402


class Digits(lightning.LightningModule):
    """Module-level (ddp_spawn pickles the model)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        self.example_input_array = torch.zeros(1, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_acc", (self(x).argmax(1) == y).float().mean(), sync_dist=True)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean(), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def main() -> None:
    out = Path(sys.argv[1])
    mlflow.set_tracking_uri(f"sqlite:///{out / 'spawn.db'}")
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("spawn", artifact_location=(out / "art").as_uri()))
    train, val = loaders()
    cb = GreenCallback()
    if sys.argv[2:] == ["own-run-then-test"]:
        trainer = lightning.Trainer(max_epochs=2, strategy="ddp_spawn", devices=2, callbacks=[cb], **quiet_trainer_kwargs())
        trainer.fit(Digits(), train, val)
        fit_run = cb.session.run_id
        trainer.test(Digits(), val)
        test_run = cb.session.run_id
        lightning.Trainer(callbacks=[cb], **quiet_trainer_kwargs()).test(Digits(), val)  # in this process, one device
        result = {"fit_run": fit_run, "test_run": test_run, "single_test_run": cb.session.run_id,
                  "tracking_uri": mlflow.get_tracking_uri(),
                  "experiment_id": mlflow.get_experiment_by_name("spawn").experiment_id}
        (out / "result.json").write_text(json.dumps(result))
        return
    with mlflow.start_run() as run:
        lightning.Trainer(max_epochs=1, callbacks=[cb], **quiet_trainer_kwargs()).fit(Digits(), train, val)
        first_energy_j = cb.session.carried.energy_j
        trainer = lightning.Trainer(max_epochs=2, strategy="ddp_spawn", devices=2, callbacks=[cb], **quiet_trainer_kwargs())
        trainer.fit(Digits(), train, val)
        still_active = mlflow.active_run().info.run_id if mlflow.active_run() else None
    result = {"run_id": run.info.run_id, "still_active": still_active, "first_energy_j": first_energy_j,
              "tracking_uri": mlflow.get_tracking_uri(), "experiment_id": run.info.experiment_id}
    (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
