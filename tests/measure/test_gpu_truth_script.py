"""benchmarks/gpu_truth.py: one prepared script; without a GPU it says so and exits 2; --fake checks its analysis."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_green.measure import hardware

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "gpu_truth.py"


def test_without_a_gpu_it_fails_cleanly_with_what_is_missing() -> None:
    if hardware.nvml_library_error() is None:
        pytest.skip("this machine has an NVIDIA driver: the benchmark would run for a minute")
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "needs an NVIDIA GPU" in out.stderr and "no NVIDIA driver" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


@pytest.mark.slow
def test_fake_mode_runs_the_whole_analysis() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--fake", "--seconds", "1.5", "--windows", "2"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    period = re.search(r"counter update period learnt: ([0-9.]+) s", out.stdout)
    assert period is not None and 0.09 <= float(period.group(1)) <= 0.11, out.stdout
    assert "agreement: counter - sampled" in out.stdout
    assert "0.25 s windows (2)" in out.stdout and "flagged coarse 2/2" in out.stdout
    assert "1 s windows (2)" in out.stdout and "flagged coarse 0/2" in out.stdout


SHARE_SCRIPT = SCRIPT.with_name("gpu_share.py")


def test_the_sharing_benchmark_without_a_gpu_fails_cleanly_too() -> None:
    if hardware.nvml_library_error() is None:
        pytest.skip("this machine has an NVIDIA driver: the benchmark would run for a minute")
    out = subprocess.run([sys.executable, str(SHARE_SCRIPT)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "needs an NVIDIA GPU" in out.stderr and "Traceback" not in out.stderr and out.stdout == ""


@pytest.mark.slow
def test_the_sharing_benchmark_bills_each_phase_by_its_share_on_a_fake_gpu() -> None:
    out = subprocess.run(
        [sys.executable, str(SHARE_SCRIPT), "--fake", "--phase-seconds", "1.5"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    ratios = {
        m.group(1).strip(): float(m.group(2))
        for m in re.finditer(r"^  (both idle|alone|shared|neighbour only)\s+[0-9.]+ J\s+[0-9.]+ J\s+([0-9.]+)", out.stdout, re.M)
    }
    expected = {"both idle": 0.5, "alone": 1.0, "shared": 0.5, "neighbour only": 0.0}
    assert ratios == pytest.approx(expected, abs=0.05), out.stdout
