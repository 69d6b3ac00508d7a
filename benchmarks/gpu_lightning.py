"""Lightning on a real GPU: what ``GreenCallback`` logs, against an independent 100 ms power sampler.

One prepared run: a bf16 MLP (four ``--width``-wide layers, batches generated on the device)
trains for ``--epochs`` epochs of ``--steps`` steps with validation, under
``Trainer(callbacks=[GreenCallback()])``, logging to an MLflow file store in a temporary
directory. Meanwhile a thread samples ``nvmlDeviceGetPowerUsage`` every 100 ms. It prints:

* the run's GPU energy (``green/energy_gpu_kwh``) against the sampled power integrated over the
  whole ``trainer.fit`` call (the callback measures from setup to teardown, inside it);
* the per-epoch energies (``green/epoch_energy_kwh``) against the sampled power over each epoch;
* how the GPU was billed (report.json: basis, scope, reason) and the four phases' sum
  (train + validation + data + other) against the total.

It needs torch with CUDA, Lightning, MLflow (``mlflow-skinny`` is enough), nvidia-ml-py and a
driver; without a GPU it says so and exits 2. ``--accelerator cpu`` runs the same flow on the
CPU with small sizes (no power sampler) to check the script on any machine.

Usage::

    python benchmarks/gpu_lightning.py [--epochs 4] [--steps 150] [--width 8192] [--batch 4096]
    python benchmarks/gpu_lightning.py --accelerator cpu --width 64 --batch 32 --steps 20 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

J_PER_KWH = 3.6e6


def _missing() -> str | None:
    from mlflow_green.measure import hardware

    problem = hardware.nvml_library_error()
    if problem is not None:
        return f"no NVIDIA driver ({problem})"
    import torch

    return None if torch.cuda.is_available() else "torch sees no CUDA device"


def _model(width: int, batch: int) -> Any:
    import lightning
    import torch

    class Mlp(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            layers: list[torch.nn.Module] = []
            for _ in range(3):
                layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
            self.net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 10))

        def _batch(self) -> tuple[Any, Any]:
            x = torch.randn(batch, width, device=self.device)
            return x, (x[:, :10].argmax(dim=1))

        def training_step(self, _: Any, __: int) -> Any:
            x, y = self._batch()
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, _: Any, __: int) -> None:
            x, y = self._batch()
            self.log("val_accuracy", (self.net(x).argmax(dim=1) == y).float().mean())

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return Mlp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=150, help="training steps per epoch")
    parser.add_argument("--width", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--accelerator", choices=("gpu", "cpu"), default="gpu")
    args = parser.parse_args()
    gpu = args.accelerator == "gpu"
    if gpu and (missing := _missing()) is not None:
        print(f"gpu_lightning: needs an NVIDIA GPU — {missing}. Not run: no figure was produced.", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="gpu-lightning-"))
    os.environ["MLFLOW_GREEN_CACHE_DIR"] = str(workdir / "cache")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow-skinny has no SQL store; a file store will do
    import lightning
    import mlflow
    import torch

    from mlflow_green.integrations.lightning import GreenCallback

    mlflow.set_tracking_uri((workdir / "mlruns").as_uri())
    mlflow.set_experiment("gpu-lightning")
    loader = torch.utils.data.DataLoader(range(args.steps), batch_size=1)
    val_loader = torch.utils.data.DataLoader(range(max(args.steps // 5, 1)), batch_size=1)
    trainer = lightning.Trainer(
        accelerator=args.accelerator, devices=1, max_epochs=args.epochs, precision="bf16-mixed" if gpu else "32-true",
        callbacks=[GreenCallback(region="FRA", quality_metric="val_accuracy")], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    sampler = epoch_marks = None
    if gpu:
        sys.path.insert(0, str(Path(__file__).parent))
        import pynvml
        from _nvml_handle import nvml_handle_of
        from gpu_truth import PowerSampler


        pynvml.nvmlInit()
        handle = nvml_handle_of(pynvml, 0)
        sampler = PowerSampler(pynvml, handle).__enter__()
        epoch_marks = _EpochMarks()
        trainer.callbacks.append(epoch_marks)
    print(f"gpu_lightning: {args.epochs} epochs x {args.steps} steps, width {args.width}, batch {args.batch}, "
          f"{'bf16-mixed on ' + torch.cuda.get_device_name(0) if gpu else 'CPU (script check)'}")
    started_s = time.monotonic()
    trainer.fit(_model(args.width, args.batch), loader, val_loader)
    ended_s = time.monotonic()
    if sampler is not None:
        sampler.__exit__()
    _report(mlflow, workdir, sampler, epoch_marks, started_s, ended_s)
    print(f"  the run stays in {workdir / 'mlruns'} (MLflow file store)")
    return 0


class _EpochMarks:
    """Monotonic times of each training epoch's start and end (a plain Lightning callback)."""

    def __new__(cls) -> Any:
        import lightning

        class Marks(lightning.Callback):
            def __init__(self) -> None:
                self.spans: list[list[float]] = []

            def on_train_epoch_start(self, *_: Any) -> None:
                self.spans.append([time.monotonic()])

            def on_train_epoch_end(self, *_: Any) -> None:
                self.spans[-1].append(time.monotonic())

        return Marks()


def _report(mlflow: Any, workdir: Path, sampler: Any, marks: Any, started_s: float, ended_s: float) -> None:
    client = mlflow.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("gpu-lightning").experiment_id])
    metrics = run.data.metrics
    print(f"  run {run.info.run_id}: {run.info.status}, {len(metrics)} metrics, "
          f"green.scope={run.data.tags.get('green.scope')}, green.meters={run.data.tags.get('green.meters')}")
    report = json.loads(Path(client.download_artifacts(run.info.run_id, "green/report.json", str(workdir))).read_text())
    gpu_j = metrics.get("green/energy_gpu_kwh", 0.0) * J_PER_KWH
    total_j = metrics.get("green/energy_kwh", 0.0) * J_PER_KWH
    phases_j = sum(metrics.get(f"green/energy_{p}_kwh", 0.0) for p in ("train", "validation", "data", "other"))
    print(f"  green/energy_kwh {total_j:.1f} J (GPU {gpu_j:.1f} J); train + validation + data + other = "
          f"{phases_j * J_PER_KWH:.1f} J")
    totals = report.get("totals", {})
    print(f"  report.json totals: scope {totals.get('scope')}, GPU basis {totals.get('basis_by_component', {}).get('gpu')}, "
          f"duration {totals.get('duration_s', 0.0):.2f} s")
    for device in _gpu_rows(report.get("meters", {})):
        print(f"  NVML device: {json.dumps(device, sort_keys=True)[:600]}")
    if sampler is None:
        return
    sampled_j = sampler.energy_j(started_s, ended_s)
    print(f"  whole fit: run's GPU energy {gpu_j:.1f} J vs sampled over trainer.fit {sampled_j:.1f} J "
          f"({100 * (gpu_j - sampled_j) / sampled_j:+.2f} %; the run starts at setup, inside fit)")
    history = client.get_metric_history(run.info.run_id, "green/epoch_energy_kwh")
    for i, (point, span) in enumerate(zip(sorted(history, key=lambda m: m.step), marks.spans)):
        epoch_sampled_j = sampler.energy_j(span[0], span[-1])
        epoch_j = point.value * J_PER_KWH
        print(f"  epoch {i}: green/epoch_energy_kwh {epoch_j:.1f} J vs GPU sampled over the epoch "
              f"{epoch_sampled_j:.1f} J ({span[-1] - span[0]:.2f} s)")


def _gpu_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's GPU device entries, wherever the report keeps them."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if str(node.get("device_id", "")).startswith("gpu:"):
                found.append(node)
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(report)
    return found


if __name__ == "__main__":
    sys.exit(main())
