"""Run by the DDP test: two CPU processes (gloo) train with GreenCallback; rank 0 writes result.json.

The GPUs are a FakeNVML host of four: rank r holds a context on GPU r (its real PID), another
job (PID 1) on GPU 2, GPU 3 idles. Each rank must bill only its own GPU.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import lightning  # noqa: E402
import mlflow  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.measure.meters.nvml import NvmlMeter  # noqa: E402
from mlflow_green.testing import FakeGPU, FakeNVML, FakeProcess  # noqa: E402

FAKE_HOST = FakeNVML([FakeGPU(f"GPU-ddp-{i}", name="NVIDIA Fake H100", power_w=100.0 * (i + 1)) for i in range(4)])


class HoldFakeGPUs(lightning.Callback):
    """Once the ranks exist, each holds a context on its own fake GPU (as CUDA would)."""

    def setup(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule, stage: str) -> None:
        import torch

        pids: list[int] = [0] * trainer.world_size
        torch.distributed.all_gather_object(pids, os.getpid())
        for rank, pid in enumerate(pids):
            FAKE_HOST.gpus[rank].processes = [FakeProcess(pid)]
        FAKE_HOST.gpus[2].processes = [FakeProcess(1)]  # another job's process


def main() -> None:
    out = Path(sys.argv[1])
    uri = f"sqlite:///{out / 'ddp.db'}"
    mlflow.set_tracking_uri(uri)
    rank = os.environ.get("LOCAL_RANK", "0")
    if rank == "0":
        experiment_id = mlflow.create_experiment("ddp", artifact_location=(out / "artifacts").as_uri())
        (out / "experiment_id").write_text(experiment_id)
    train, val = loaders()
    cb = GreenCallback(meters=[NvmlMeter(nvml=FAKE_HOST, environ={}), "estimate"])
    trainer = lightning.Trainer(
        max_epochs=2, strategy="ddp", devices=2, callbacks=[HoldFakeGPUs(), cb], **quiet_trainer_kwargs()
    )
    if rank == "0":
        mlflow.set_experiment(experiment_id=(out / "experiment_id").read_text())
    trainer.fit(digits_classifier(), train, val)
    logged = {
        str(trainer.global_rank): {
            "logged": cb.session.run_id is not None,
            "pid": os.getpid(),
            "excluded": sorted(cb.session.template.processes.exclude_pids),
        }
    }
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(logged))
    trainer.strategy.barrier()  # both ranks' files are written
    if trainer.global_rank == 0:
        ranks = {}
        for path in sorted(out.glob("rank*.json")):
            ranks.update(json.loads(path.read_text()))
        result = {"tracking_uri": uri, "experiment_id": (out / "experiment_id").read_text(), "rank_logged": ranks}
        (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
