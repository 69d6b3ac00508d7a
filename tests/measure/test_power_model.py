"""CodeCarbon's power model, resolved through CodeCarbon once per machine and version, then cached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_green.measure import hardware, model_cache
from mlflow_green.measure.codecarbon_model import resolve
from mlflow_green.measure.model_cache import cache_path, cached_model, load_power_model, machine_facts
from mlflow_green.measure.power_model import PowerModel

GIB = 2**30


@pytest.mark.parametrize(
    ("model", "tdp_w", "table_name"),
    [
        ("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", 65.0, "Intel Core i7-8700"),
        ("Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", 125.0, "Intel Xeon Gold 6130"),
        ("AMD EPYC 7763 64-Core Processor", 280.0, "AMD EPYC 7763"),
        ("AMD Ryzen 9 5950X 16-Core Processor", 105.0, "AMD Ryzen 9 5950X"),
    ],
)
def test_tdp_from_codecarbons_table_and_match(model: str, tdp_w: float, table_name: str) -> None:
    resolved = resolve(cpu_model=model, logical_cpus=8, ram_total_bytes=16 * GIB, sockets=1)
    assert (resolved.tdp_w, resolved.cpu_rule) == (tdp_w, "table")
    assert repr(table_name) in resolved.cpu_source and f"CodeCarbon {resolved.codecarbon_version}" in resolved.cpu_source


def test_table_tdp_is_per_package() -> None:
    resolved = resolve(cpu_model="AMD EPYC 7763 64-Core Processor", logical_cpus=256, ram_total_bytes=GIB, sockets=2)
    assert resolved.tdp_w == 560.0 and "× 2 sockets" in resolved.cpu_source


def test_unknown_cpu_gets_codecarbons_per_thread_rule_not_85_w() -> None:
    """The issue's case: an unknown CPU was 85 W; CodeCarbon 3.x says 4 W per thread."""
    resolved = resolve(cpu_model="AMD EPYC", logical_cpus=64, ram_total_bytes=GIB, sockets=1)
    assert (resolved.tdp_w, resolved.cpu_rule) == (256.0, "per-thread")
    assert "4 W per thread × 64 threads = 256 W" in resolved.cpu_source


@pytest.mark.parametrize(("gib", "watts"), [(1024, 38.0), (16, 10.0), (24, 20.0), (2, 10.0)])
def test_ram_is_codecarbons_per_dimm_rule(gib: int, watts: float) -> None:
    """The issue's case: 1 TB of RAM was 358 W; CodeCarbon 3.x's per-DIMM rule says 38 W."""
    resolved = resolve(cpu_model="AMD EPYC", logical_cpus=2, ram_total_bytes=gib * GIB, sockets=1)
    assert resolved.ram_power_w == watts and resolved.ram_rule == "per-DIMM"
    assert "DIMMs estimated" in resolved.ram_source


def test_load_curves_are_sampled_from_codecarbons_functions() -> None:
    resolved = resolve(cpu_model="AMD EPYC", logical_cpus=4, ram_total_bytes=GIB, sockets=1)
    for load in (0.0, 0.1, 0.37, 0.5, 0.99, 1.0):  # 3.3: 0.1 + 0.9 × load³ for the machine
        assert resolved.cpu_power_w(load) == pytest.approx(16.0 * (0.1 + 0.9 * load**3), rel=1e-4)
        assert resolved.cpu_power_w(load, process=True) == pytest.approx(16.0 * load, abs=1e-9)


@pytest.mark.slow
def test_this_machine_matches_codecarbons_own_tdp_probe() -> None:
    from codecarbon.core.cpu import TDP

    theirs = TDP()
    ours = resolve()
    assert ours.tdp_w == pytest.approx(float(theirs.tdp) * (hardware.cpu_sockets() if ours.cpu_rule == "table" else 1))


def test_cache_is_written_once_then_read(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    first, where = load_power_model(directory)
    assert where.startswith("resolved now through CodeCarbon")
    path = cache_path(directory, machine_facts(), first.codecarbon_version)
    assert path.is_file() and json.loads(path.read_text())["codecarbon_version"] == first.codecarbon_version
    model_cache._memo.clear()
    second, where = load_power_model(directory)
    assert where == f"cache {path}" and second == first


def test_stale_or_broken_cache_is_resolved_again(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    model, _ = load_power_model(directory)
    path = cache_path(directory, machine_facts(), model.codecarbon_version)
    for damage in (
        lambda d: {**d, "codecarbon_version": "0.0.1"},  # CodeCarbon upgraded since
        lambda d: {**d, "facts": {**d["facts"], "logical_cpus": 4096}},  # the VM was resized
        lambda d: {**d, "machine_curve": [0.5]},  # truncated
        lambda d: {**d, "tdp_w": -5},  # nonsense
    ):
        path.write_text(json.dumps(damage(json.loads(path.read_text()))))
        model_cache._memo.clear()
        assert cached_model(directory) is None
        again, where = load_power_model(directory)
        assert where.startswith("resolved now") and again == model
    path.write_text("{not json")
    model_cache._memo.clear()
    assert load_power_model(directory)[0] == model


def test_unwritable_cache_folder_still_gives_the_model(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    model, where = load_power_model(blocker / "cache")
    assert model.tdp_w > 0 and "not cached" in where


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_GREEN_CACHE_DIR", str(tmp_path / "x"))
    assert model_cache.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("MLFLOW_GREEN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache.cache_dir() == tmp_path / "xdg" / "mlflow-green"


def _run(code: str, cache: Path) -> str:
    env = {**os.environ, "MLFLOW_GREEN_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


TRACK = (
    "import sys, mlflow_green\n"
    "t = mlflow_green.EnergyTracker(); t.start(); t.stop()\n"
    "slow = [m for m in ('psutil', 'importlib.metadata', 'hashlib', 'pandas') if m in sys.modules]\n"
    "print('codecarbon' in sys.modules, t.meters_tag(), ','.join(slow) or '-')\n"
)


def test_warm_cache_keeps_codecarbon_out_of_the_process(tmp_path: Path) -> None:
    cold = _run(TRACK, tmp_path / "cache")
    assert cold.split()[0] == "True"  # the first process on this machine resolves through CodeCarbon
    warm = _run(TRACK, tmp_path / "cache")
    assert warm.split()[0] == "False"
    assert warm.split()[2] == "-"  # nothing slow to import on the start path (cold-start budget)
    assert "estimate*cpu-time" in warm or "rapl-counter*cpu-time" in warm


def test_fallback_when_codecarbon_cannot_be_imported(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['codecarbon'] = None\n"
        "from mlflow_green.measure.model_cache import load_power_model\n"
        "model, where = load_power_model()\n"
        "print(model.cpu_rule, '|', where, '|', model.cpu_source)\n"
    )
    rule, where, source = (part.strip() for part in _run(code, tmp_path / "cache").split("|"))
    assert rule == "fallback" and "CodeCarbon could not be used" in where and "CodeCarbon unavailable" in source
    assert not list((tmp_path / "cache").glob("*.json")) if (tmp_path / "cache").exists() else True


def test_example_model_round_trips() -> None:
    model = PowerModel.example()
    assert PowerModel.from_json(json.loads(json.dumps(model.to_json()))) == model
