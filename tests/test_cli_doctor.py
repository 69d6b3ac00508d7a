"""`mlflow-green doctor` tells the truth about this machine, in text and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

from click.testing import CliRunner

from mlflow_green.cli import main
from mlflow_green.testing import FakeMeter, registered_meters


def test_doctor_runs_as_the_installed_console_script() -> None:
    exe = Path(sys.executable).with_name("mlflow-green")
    out = subprocess.run([str(exe), "doctor"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Meters" in out.stdout
    assert "region" in out.stdout


def test_doctor_json_explains_every_meter_and_the_carbon_settings() -> None:
    result = CliRunner().invoke(main, ["doctor", "--json"], env={"MLFLOW_GREEN_REGION": "FR", "MLFLOW_GREEN_PUE": "1.3"})
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    names = {m["name"] for m in report["meters"]}
    assert {"nvml", "rapl", "estimate", "codecarbon"} <= names
    for meter in report["meters"]:
        assert meter["reason"], f"{meter['name']} gives no reason"
    assert report["config"]["region"] == "FRA"
    assert report["config"]["pue"] == 1.3
    assert report["config"]["sources"]["pue"] == "env MLFLOW_GREEN_PUE"
    # Whatever this machine has, CPU and RAM are always measured, and an estimate says so.
    assert report["components"]["cpu"] is not None and report["components"]["ram"] is not None
    provenances = {c["provenance"] for c in report["components"].values() if c}
    assert report["estimated"] == ("estimate" in provenances)


def test_doctor_on_a_machine_without_rapl_or_gpu_says_cpu_and_ram_are_estimated() -> None:
    """This is the truth on the project's CI machines (a VM: no powercap tree, no NVIDIA driver)."""
    result = CliRunner().invoke(main, ["doctor", "--json"])
    report = json.loads(result.output)
    by_name = {m["name"]: m for m in report["meters"]}
    if not Path("/sys/class/powercap").exists():
        assert not by_name["rapl"]["available"]
        assert "/sys/class/powercap not present" in by_name["rapl"]["reason"]
        assert report["components"]["cpu"]["meter"] == "estimate"
    if not report["hardware"]["gpus"]:
        assert not by_name["nvml"]["available"]
        assert report["components"]["gpu"] is None
    text = CliRunner().invoke(main, ["doctor"]).output
    assert "world average" in text


def test_doctor_lists_plugin_meters_and_selects_by_priority() -> None:
    with registered_meters(partial(FakeMeter, {"cpu:0": 1.0}, name="vendor-meter", priority=500)):
        result = CliRunner().invoke(main, ["doctor", "--json"])
    report = json.loads(result.output)
    assert report["components"]["cpu"]["meter"] == "vendor-meter"
    assert report["meters"][0]["name"] == "vendor-meter"


def test_doctor_reports_bad_configuration_with_exit_2() -> None:
    result = CliRunner().invoke(main, ["doctor", "--region", "Narnia"])
    assert result.exit_code == 2
    assert "Narnia" in result.output
    as_json = CliRunner().invoke(main, ["doctor", "--json"], env={"MLFLOW_GREEN_PUE": "0.7"})
    assert as_json.exit_code == 2
    error = json.loads(as_json.output)
    assert error["type"] == "ConfigError" and "MLFLOW_GREEN_PUE" in error["error"]


def test_doctor_states_scope_host_identity_and_the_estimate_model_in_force() -> None:
    from mlflow_green.measure.codecarbon_model import resolve
    from mlflow_green.measure.host import host_id

    report = json.loads(CliRunner().invoke(main, ["doctor", "--json"]).output)
    assert report["scope"] == "process" and report["host_id"] == host_id()
    model = report["estimate_model"]
    truth = resolve()  # CodeCarbon's own answer for this machine
    assert model["source"] == f"CodeCarbon {truth.codecarbon_version}"
    assert (model["cpu"]["tdp_w"], model["cpu"]["rule"]) == (truth.tdp_w, truth.cpu_rule)
    assert model["ram"]["power_w"] == truth.ram_power_w
    text = CliRunner().invoke(main, ["doctor"]).output
    assert f"Estimate model in force: CodeCarbon {truth.codecarbon_version}" in text
    assert "scope  process (default)" in text and truth.cpu_source in text
    if report["components"]["cpu"]["meter"] == "estimate":
        assert report["meters_tag"] == "cpu:estimate*cpu-time,ram:estimate*rss"


def test_doctor_scope_machine_and_bad_scope() -> None:
    report = json.loads(CliRunner().invoke(main, ["doctor", "--json", "--scope", "machine"]).output)
    assert report["scope"] == "machine"
    assert "*" not in report["meters_tag"]
    bad = CliRunner().invoke(main, ["doctor", "--scope", "everything"])
    assert bad.exit_code == 2 and "everything" in bad.output
