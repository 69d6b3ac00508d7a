"""Run by the DDP test: two CPU processes (gloo) train with GreenCallback; rank 0 writes result.json."""

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


def main() -> None:
    out = Path(sys.argv[1])
    uri = f"sqlite:///{out / 'ddp.db'}"
    mlflow.set_tracking_uri(uri)
    rank = os.environ.get("LOCAL_RANK", "0")
    if rank == "0":
        experiment_id = mlflow.create_experiment("ddp", artifact_location=(out / "artifacts").as_uri())
        (out / "experiment_id").write_text(experiment_id)
    train, val = loaders()
    cb = GreenCallback()
    trainer = lightning.Trainer(max_epochs=2, strategy="ddp", devices=2, callbacks=[cb], **quiet_trainer_kwargs())
    if rank == "0":
        mlflow.set_experiment(experiment_id=(out / "experiment_id").read_text())
    trainer.fit(digits_classifier(), train, val)
    logged = {str(trainer.global_rank): cb.session.run_id is not None}
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
