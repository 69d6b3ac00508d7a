"""Run by the DDP failure tests: two CPU ranks (gloo), one raises in the second epoch's fourth step.

``python ddp_failure_train.py OUT STRATEGY FAILING_RANK``: STRATEGY is ``ddp`` (Lightning launches the
second process) or ``ddp_spawn``. The fit is expected to raise; what the launching process saw goes
to OUT/result.json (its run id, from the callback or the store, is read by the test).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import lightning  # noqa: E402
import mlflow  # noqa: E402
import torch  # noqa: E402
from lightning_models import loaders, quiet_trainer_kwargs  # noqa: E402
from torch import nn  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402


class FailsOnOneRank(lightning.LightningModule):
    """A digits classifier whose ``failing_rank`` raises at the second epoch's fourth training step."""

    def __init__(self, failing_rank: int) -> None:
        super().__init__()
        self.failing_rank = failing_rank
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        self.example_input_array = torch.zeros(1, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.trainer.global_rank == self.failing_rank and self.current_epoch == 1 and batch_idx == 3:
            raise RuntimeError(f"loss exploded on rank {self.failing_rank}")
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean(), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def main() -> None:
    out, strategy, failing_rank = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    mlflow.set_tracking_uri(f"sqlite:///{out / 'ddp.db'}")
    if os.environ.get("LOCAL_RANK", "0") == "0":
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("ddp-failure", artifact_location=(out / "art").as_uri()))
    cb = GreenCallback(meters=[FakeMeter({"cpu:0": 100.0})])
    train, val = loaders()
    trainer = lightning.Trainer(max_epochs=3, strategy=strategy, devices=2, callbacks=[cb], **quiet_trainer_kwargs())
    try:
        trainer.fit(FailsOnOneRank(failing_rank), train, val)
        raised = None
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        raised = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    if os.environ.get("LOCAL_RANK", "0") == "0":
        (out / "result.json").write_text(json.dumps({"raised": raised}))


if __name__ == "__main__":
    main()
