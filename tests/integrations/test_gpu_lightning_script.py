"""benchmarks/gpu_lightning.py: without a GPU it says so and exits 2; on the CPU it runs the whole flow."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_green.measure import hardware

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "gpu_lightning.py"


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the script's store and cache stay under the test's directory
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env)


def test_without_a_gpu_it_fails_cleanly_with_what_is_missing(tmp_path: Path) -> None:
    if hardware.nvml_library_error() is None:
        pytest.skip("this machine has an NVIDIA driver: the benchmark would train on it")
    out = _run(tmp_path=tmp_path)
    assert out.returncode == 2
    assert "needs an NVIDIA GPU" in out.stderr and "Traceback" not in out.stderr and out.stdout == ""


@pytest.mark.slow
def test_on_the_cpu_the_callbacks_run_is_finished_and_its_phases_add_up(tmp_path: Path) -> None:
    out = _run("--accelerator", "cpu", "--width", "32", "--batch", "16", "--steps", "20", "--epochs", "2", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"run [0-9a-f]{32}: FINISHED", out.stdout), out.stdout
    energy = re.search(r"green/energy_kwh ([0-9.]+) J .* = ([0-9.]+) J", out.stdout)
    assert energy is not None and float(energy.group(1)) > 0, out.stdout
    assert float(energy.group(1)) == pytest.approx(float(energy.group(2)), rel=0.01, abs=0.05)
    assert "scope cpu:process,ram:process" in out.stdout
