"""Wall-time overhead of the Lightning GreenCallback on a training of about 5 ms per step.

The same model is trained with and without the callback, alternately (A B A B …), each fit
inside an active MLflow run on a sqlite store. Figures from one run of this script, as for
Keras (see benchmarks/callback_overhead_keras.py): the A/B overhead per steady-state epoch
(the budget), the direct cost (time inside GreenCallback's epoch-level hooks, every call timed,
plus its two per-batch hooks timed over 100 000 calls, as a share of the epoch), and the fixed
cost per fit.

Usage::

    python benchmarks/callback_overhead_lightning.py [--repeats 6] [--epochs 5] [--steps 200]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import lightning  # noqa: E402
import mlflow  # noqa: E402
import torch  # noqa: E402
from _overhead import compare, timed_hooks  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402

BATCH_SIZE = 256
TimedGreenCallback, HOOK_S = timed_hooks(GreenCallback)
FIT_HOOKS = {"on_fit_start", "on_fit_end"}
EPOCH_HOOKS = {"on_train_epoch_start", "on_train_epoch_end", "on_validation_start", "on_validation_end"}


def batch_hooks_us(calls: int = 100_000) -> float:
    """Microseconds GreenCallback's on_train_batch_start + on_train_batch_end cost per batch."""

    class Trainer:
        should_stop = False
        sanity_checking = False

    callback, trainer = GreenCallback(), Trainer()
    batch = (torch.zeros(BATCH_SIZE, 64), torch.zeros(BATCH_SIZE))
    start_s = time.perf_counter()
    for index in range(calls):
        callback.on_train_batch_start(trainer, None, batch, index)
        callback.on_train_batch_end(trainer, None, None, batch, index)
    return (time.perf_counter() - start_s) / calls * 1e6


class Net(lightning.LightningModule):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
        self.example_input_array = torch.zeros(1, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class EpochEnds(lightning.Callback):
    def __init__(self) -> None:
        self.ends_s: list[float] = []

    def on_train_epoch_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        self.ends_s.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200, help="steps per epoch")
    parser.add_argument("--width", type=int, default=384, help="hidden width (sets the step time)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH_SIZE * args.steps, 64, generator=generator)
    y = torch.randint(0, 10, (BATCH_SIZE * args.steps,), generator=generator)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH_SIZE)
    fits = {"green": 0}

    def timed_fit(with_callback: bool) -> tuple[float, list[float]]:
        ends = EpochEnds()
        callbacks = [TimedGreenCallback(), ends] if with_callback else [ends]
        fits["green"] += with_callback
        trainer = lightning.Trainer(
            max_epochs=args.epochs, callbacks=callbacks, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
        )
        with mlflow.start_run():
            start_s = time.perf_counter()
            trainer.fit(Net(args.width), loader)
            total_s = time.perf_counter() - start_s
        return total_s, [b - a for a, b in zip(ends.ends_s, ends.ends_s[1:])]

    def hooks_ms_per_epoch() -> float:
        return 1000 * sum(t for n, t in HOOK_S.items() if n in EPOCH_HOOKS) / (fits["green"] * args.epochs)

    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/bench.db")
        mlflow.set_experiment("callback-overhead")
        compare(
            name="Lightning fit",
            timed_fit=timed_fit,
            repeats=args.repeats,
            epochs=args.epochs,
            steps=args.steps,
            hooks_ms_per_epoch=hooks_ms_per_epoch,
            per_fit_ms=lambda: 1000 * sum(t for n, t in HOOK_S.items() if n in FIT_HOOKS) / fits["green"],
            wrapper_us_per_step=batch_hooks_us(),
        )


if __name__ == "__main__":
    main()
