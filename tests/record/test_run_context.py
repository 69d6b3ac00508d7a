"""The run context provider tags every MLflow run, through MLflow's own entry-point loading."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlflow_green.record import schema
from mlflow_green.record.run_context import GreenRunContextProvider


def test_provider_tags_hardware_and_region() -> None:
    tags = GreenRunContextProvider().tags()
    assert tags[schema.TAG_HARDWARE_CPU]
    from mlflow_green.measure import hardware

    assert tags[schema.TAG_HARDWARE_GPU] == (hardware.summarise_names(hardware.gpu_names()) or "none")
    assert tags[schema.TAG_REGION]


def test_every_mlflow_run_gets_the_tags_via_the_entry_point(tmp_path: Path) -> None:
    code = f"""
import mlflow
mlflow.set_tracking_uri("sqlite:///{tmp_path / 'ctx.db'}")
exp = mlflow.create_experiment("ctx", artifact_location="{(tmp_path / 'a').as_uri()}")
with mlflow.start_run(experiment_id=exp) as run:
    pass
tags = mlflow.MlflowClient().get_run(run.info.run_id).data.tags
print(tags["{schema.TAG_REGION}"], "|", tags["{schema.TAG_HARDWARE_CPU}"], "|", tags["{schema.TAG_HARDWARE_GPU}"])
"""
    env = {**__import__("os").environ, "MLFLOW_GREEN_REGION": "de"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    region, cpu, gpu = (part.strip() for part in out.stdout.strip().splitlines()[-1].split("|"))
    assert region == "DEU"
    assert cpu
    from mlflow_green.measure import hardware

    assert gpu == (hardware.summarise_names(hardware.gpu_names()) or "none")
