"""Host hardware facts: CPU model, sockets, TDP from CodeCarbon's table, RAM, GPU names."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlflow_green.measure import hardware
from mlflow_green.testing import FakeGPU, FakeNVML


def test_cpu_model_and_sockets() -> None:
    model = hardware.cpu_model()
    assert isinstance(model, str) and model
    assert hardware.cpu_sockets() >= 1


@pytest.mark.parametrize(
    ("model", "tdp_w", "table_name"),
    [
        ("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", 65.0, "Intel Core i7-8700"),
        ("Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", 125.0, "Intel Xeon Gold 6130"),
        ("AMD EPYC 7763 64-Core Processor", 280.0, "AMD EPYC 7763"),
        ("AMD Ryzen 9 5950X 16-Core Processor", 105.0, "AMD Ryzen 9 5950X"),
        ("Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz", 145.0, "Intel Xeon E5-2686 v4"),
    ],
)
def test_tdp_from_codecarbon_table(model: str, tdp_w: float, table_name: str) -> None:
    found_w, note = hardware.cpu_tdp_w(model)
    assert found_w == tdp_w
    assert repr(table_name) in note and "CodeCarbon" in note


def test_longest_match_wins() -> None:
    # "Intel Core i7-860" is in the table too; its tokens are not all in this model string.
    assert hardware.cpu_tdp_w("Intel(R) Core(TM) i7-860S CPU")[0] == 82.0


def test_unknown_cpu_gets_codecarbon_default() -> None:
    tdp_w, note = hardware.cpu_tdp_w("AMD EPYC")
    assert tdp_w == hardware.DEFAULT_CPU_TDP_W == 85.0
    assert note == "AMD EPYC not in CodeCarbon's TDP table — assuming 85 W (CodeCarbon's default)"


def test_bare_part_numbers_match_only_amd() -> None:
    # The table has "6140" (an AMD Opteron); an Intel part with that number must not take it.
    assert hardware.cpu_tdp_w("Fictional Intel Widget 6140")[0] == hardware.DEFAULT_CPU_TDP_W


def test_this_machine_never_raises() -> None:
    tdp_w, note = hardware.cpu_tdp_w()
    assert tdp_w > 0 and note.startswith(hardware.cpu_model())
    assert hardware.total_ram_bytes() > 0


def test_gpu_names_with_fake_nvml() -> None:
    nvml = FakeNVML([FakeGPU("GPU-1", name="NVIDIA A100"), FakeGPU("GPU-2", name="NVIDIA A100")])
    assert hardware.gpu_names(nvml) == ["NVIDIA A100", "NVIDIA A100"]
    assert nvml.initialised == 0


def test_gpu_names_without_driver_is_empty() -> None:
    assert hardware.gpu_names(FakeNVML([FakeGPU("GPU-1")], driver=False)) == []
    assert isinstance(hardware.gpu_names(), list)


def test_tdp_lookup_does_not_import_codecarbon() -> None:
    code = (
        "import sys; from mlflow_green.measure import hardware; hardware.cpu_tdp_w('AMD EPYC 7763'); "
        "assert 'codecarbon' not in sys.modules and 'pynvml' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
