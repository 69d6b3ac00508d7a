"""report.json tells the truth: idle floor per device, scope and apportioning, the model behind estimates."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

import mlflow_green
from mlflow_green import EnergyTracker
from mlflow_green.record import schema
from mlflow_green.record.report import build_report
from mlflow_green.testing import FakeMeter, ManualClock


def test_idle_floor_gives_the_lowest_power_and_the_energy_above_it() -> None:
    clock = ManualClock()
    gpu = FakeMeter({"gpu:GPU-1": lambda t: 100.0 if t < 10 else 300.0, "cpu:0": 40.0})
    tracker = EnergyTracker(meters=[gpu], clock=clock)
    tracker.start()
    clock.advance(10.0)
    with tracker.window("epoch"):  # 300 W from here on
        clock.advance(10.0)
    clock.advance(0.1)  # a tick-short interval teaches nothing
    total = tracker.stop()
    report = build_report(tracker, total)
    floors = {d["device_id"]: d for d in report["idle_floor"]["devices"]}
    assert floors["gpu:GPU-1"]["floor_power_w"] == pytest.approx(100.0)
    gross_j = total.component_energy_j("gpu")
    assert gross_j == pytest.approx(100.0 * 10 + 300.0 * 10.1, rel=1e-3)  # the fake integrates numerically
    assert floors["gpu:GPU-1"]["gross_energy_j"] == gross_j
    assert floors["gpu:GPU-1"]["dynamic_energy_j"] == pytest.approx(gross_j - 100.0 * 20.1)
    assert floors["cpu:0"]["floor_power_w"] == pytest.approx(40.0)
    assert floors["cpu:0"]["dynamic_energy_j"] == pytest.approx(0.0, abs=1e-6)
    assert floors["gpu:GPU-1"]["intervals"] == 2
    assert "lowest mean power" in report["idle_floor"]["basis"]


def test_a_run_without_intervals_says_its_floor_is_the_mean() -> None:
    tracker = EnergyTracker(meters=[FakeMeter({"cpu:0": 10.0})], clock=ManualClock())
    tracker.start()
    total = tracker.stop()
    entry = next(d for d in build_report(tracker, total)["idle_floor"]["devices"] if d["device_id"] == "cpu:0")
    assert entry["intervals"] == 0 and "run's mean power" in entry["note"]


def _report(run_id: str, tmp_path: Path) -> dict:  # type: ignore[type-arg]
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="green/report.json", dst_path=str(tmp_path))
    return json.loads(Path(path).read_text())


@pytest.mark.parametrize(("scope", "how"), [("process", "default"), ("machine", "argument"), ("machine", "env")])
def test_tags_and_report_agree_on_scope_share_and_estimate(
    scope: str, how: str, mlflow_experiment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if how == "env":
        monkeypatch.setenv("MLFLOW_GREEN_SCOPE", scope)
    with mlflow_green.track(meters="estimate", **({"scope": scope} if how == "argument" else {})) as tracked:
        sum(i * i for i in range(300_000))
    run = MlflowClient().get_run(tracked.run_id)
    tags, report = run.data.tags, _report(tracked.run_id, tmp_path)
    totals = report["totals"]
    assert tags[schema.TAG_SCOPE] == totals["scope"] == f"cpu:{scope},ram:{scope}"
    assert tags[schema.TAG_ESTIMATED] == str(totals["estimated"]).lower() == "true"
    if scope == "process":
        assert tags[schema.TAG_METERS] == "cpu:estimate*cpu-time,ram:estimate*rss"
        assert totals["apportioned"] is True
        assert totals["basis_by_component"] == {
            "cpu": ["estimate, apportioned by cpu-time share"],
            "ram": ["estimate, apportioned by rss share"],
        }
    else:
        assert tags[schema.TAG_METERS] == "cpu:estimate,ram:estimate"
        assert totals["apportioned"] is False and totals["basis_by_component"]["cpu"] == ["estimate"]
    model = report["meters"]["models"]["estimate"]
    assert model["source"].startswith("CodeCarbon ") and model["scope"] == scope
    assert model["cpu"]["rule"] in {"table", "per-thread", "constant"}
    devices = report["hosts"][next(iter(report["hosts"]))]["devices"]
    assert all(d["note"].startswith("estimate: CodeCarbon") for d in devices)
    assert {d["host"] for d in devices} == {mlflow_green.measure.host.host_id()}


class _SlicedGpu(FakeMeter):
    """A GPU meter billing a MIG slice: its readings carry share="mig" while its label does not."""

    def read(self, now_s: float):  # type: ignore[no-untyped-def]
        from dataclasses import replace

        return tuple(replace(c, share="mig", scope="process") for c in super().read(now_s))

    def label(self, component, provenance):  # type: ignore[no-untyped-def]
        return f"{self.name}-{provenance}"


def test_green_meters_shows_any_apportioned_reading_whatever_the_meter_label() -> None:
    gpu = _SlicedGpu({"gpu:MIG-1": 50.0}, name="nvml")
    tracker = EnergyTracker(meters=[gpu, FakeMeter({"cpu:0": 5.0, "ram:0": 1.0}, name="rapl")], clock=ManualClock())
    tracker.start()
    total = tracker.stop()
    assert tracker.meters_tag() == "gpu:nvml-counter*mig,cpu:rapl,ram:rapl"
    assert build_report(tracker, total)["totals"]["basis_by_component"]["gpu"] == ["counter, apportioned by mig share"]
