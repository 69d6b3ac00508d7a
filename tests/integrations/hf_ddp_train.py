"""Run by the Hugging Face DDP test under torchrun: two CPU processes (gloo), GreenCallback; rank 0 writes result.json."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import mlflow  # noqa: E402
from hf_models import TokenDataset, accuracy, bert_classifier, training_args  # noqa: E402
from transformers import Trainer  # noqa: E402

from mlflow_green.integrations.transformers import GreenCallback  # noqa: E402


class FailsOnRankZero(Trainer):
    """``fail``: rank zero's step raises (out of memory) after 5 optimizer steps, between two evaluations."""

    def compute_loss(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        if model.training and self.state.global_step == 5 and int(os.environ.get("RANK", "0")) == 0:
            raise RuntimeError("out of memory (simulated)")
        return super().compute_loss(model, inputs, *args, **kwargs)


def main() -> None:
    out, failing = Path(sys.argv[1]), sys.argv[2:] == ["fail"]
    mlflow.set_tracking_uri(f"sqlite:///{out / 'ddp.db'}")
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        mlflow.set_experiment("hf-ddp")
    cb = GreenCallback()
    steps = {"eval_strategy": "steps", "eval_steps": 4} if failing else {}
    trainer = (FailsOnRankZero if failing else Trainer)(
        model=bert_classifier(), args=training_args(out / "hf", per_device_train_batch_size=8, **steps),
        train_dataset=TokenDataset(96, seed=1), eval_dataset=TokenDataset(32, seed=2), compute_metrics=accuracy,
        callbacks=[cb])
    if failing:
        try:
            trainer.train()
        finally:  # the other rank waits in the step's all-reduce for one gone: torchrun ends it
            (out / f"rank{rank}.json").write_text(json.dumps({"run_id": cb.session.run_id}))
    trainer.train()
    trainer.evaluate()  # outside train(): measured on both ranks, logged once
    trainer.predict(TokenDataset(40, seed=3))
    (out / f"rank{rank}.json").write_text(json.dumps({"run_id": cb.session.run_id, "world": trainer.args.world_size}))
    import torch.distributed as dist

    if dist.is_initialized():  # torch's gloo group, left to the interpreter's exit, sometimes aborts a rank
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
