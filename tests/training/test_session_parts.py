"""The training session's parts: projection, phases, one point per step, ranks, pickling."""

from __future__ import annotations

import copy
import pickle
from types import MappingProxyType

import mlflow
import pytest
from mlflow import MlflowClient

from mlflow_green import EnergyTracker
from mlflow_green.config import GreenConfig
from mlflow_green.measure.readings import DeviceEnergy, Measurement
from mlflow_green.record import schema
from mlflow_green.testing import FakeMeter
from mlflow_green.training.distributed import DistributedContext
from mlflow_green.training.phases import PhaseLedger
from mlflow_green.training.projection import EnergyProjection
from mlflow_green.training.session import TrainingSession
from mlflow_green.training.session_run import SessionRun


def _cpu(energy_j: float, duration_s: float = 1.0, host: str = "h") -> Measurement:
    return Measurement(duration_s, (DeviceEnergy("cpu:0", "cpu", "rapl", "counter", energy_j, duration_s, host=host),))


# -- projection ----------------------------------------------------------------------------------
def test_projection_leaves_out_a_first_epoch_that_is_an_outlier_only() -> None:
    compiled = EnergyProjection(planned_epochs=4)
    for energy_j in (500.0, 100.0, 110.0):
        compiled.record_epoch(energy_j)
    assert compiled.projected_j(710.0) == pytest.approx(710.0 + 105.0)
    steady = EnergyProjection(planned_epochs=4)
    for energy_j in (120.0, 100.0, 110.0):
        steady.record_epoch(energy_j)
    assert steady.projected_j(330.0) == pytest.approx(330.0 + 110.0)


def test_projection_rate_is_the_totals_growth_between_epoch_ends_once_a_later_epoch_is_done() -> None:
    """A checkpoint of 30 J after each epoch's 100 J window: each remaining epoch costs 130 J, the checkpoint after
    the last one 30 J more, and the first epoch's window (no checkpoint before it, setup of 40 J before it) leaves
    the rate after epoch 1. The final total: 40 + 5 × 100 + 5 × 30 = 690 J."""
    projection = EnergyProjection(planned_epochs=5)
    projection.record_epoch(100.0, total_j=140.0)
    assert projection.projected_j(140.0) == pytest.approx(140.0 + 4 * 100.0)  # all there is so far
    projection.record_epoch(100.0, total_j=270.0)
    assert projection.projected_j(270.0) == pytest.approx(270.0 + 3 * 130.0 + 30.0)
    projection.record_epoch(100.0, total_j=400.0, steps=10, steps_done=30)
    assert projection.projected_j(400.0) == pytest.approx(400.0 + 2 * 130.0 + 30.0)  # = the final total, 690 J
    assert projection.mean_epoch_j() == pytest.approx(130.0)  # what a budget forecasts the next epoch at
    odd = EnergyProjection(planned_epochs=3)  # a total that went back (a meter reset): the window is kept
    odd.record_epoch(100.0, total_j=100.0)
    odd.record_epoch(100.0, total_j=50.0)
    assert odd.epoch_energies_j == [100.0, 100.0]


def test_projection_by_steps_and_the_nearer_end_of_two_limits() -> None:
    by_steps = EnergyProjection(planned_steps=100)  # max_steps, no epoch limit
    by_steps.record_epoch(50.0, steps=25, steps_done=25)
    assert by_steps.projected_j(60.0) == pytest.approx(60.0 + 75 * 2.0)
    both = EnergyProjection(planned_epochs=10, planned_steps=30)
    both.record_epoch(50.0, steps=25, steps_done=25)
    assert both.projected_j(50.0) == pytest.approx(50.0 + 5 * 2.0)  # 5 steps left, not 9 epochs
    assert EnergyProjection().projected_j(1.0) is None  # nothing planned: no projection


def test_projection_by_steps_counts_the_work_between_epochs_per_epoch_not_per_step() -> None:
    """20 steps of 2 J an epoch, a 10 J checkpoint after each, ``max_steps`` ending inside an epoch: each epoch to come,
    the cut one too, comes after a checkpoint, and one follows the last (spread over the steps, the forecast fell
    short by most of a checkpoint when the fit ended a few steps into an epoch)."""
    for planned_steps, final_j in ((100, 260.0), (90, 240.0)):  # 3 more whole epochs; 2 and 10 steps of a third
        projection = EnergyProjection(planned_epochs=10, planned_steps=planned_steps)
        projection.record_epoch(40.0, total_j=50.0, steps=20, steps_done=20)  # 10 J of setup before it
        projection.record_epoch(40.0, total_j=100.0, steps=20, steps_done=40)  # the checkpoint after epoch 0 before it
        assert projection.projected_j(100.0) == pytest.approx(final_j)


# -- phases ----------------------------------------------------------------------------------------
def test_other_is_what_the_fit_phases_leave_of_the_total_device_by_device() -> None:
    ledger = PhaseLedger()
    ledger.begin_epoch()
    ledger.add_data_wait(1.0)
    ledger.end_epoch(_cpu(80.0, 4.0), validation=_cpu(20.0, 1.0))  # rest 60 J over 3 s: data 20, train 40
    phases = ledger.with_other(_cpu(130.0, 6.0))
    assert {p: round(m.energy_j, 9) for p, m in phases.items()} == {"train": 40.0, "validation": 20.0, "data": 20.0, "other": 50.0}
    assert sum(m.energy_j for m in phases.values()) == pytest.approx(130.0, rel=1e-12)
    assert phases["data"].devices[0].basis == "counter, apportioned by time share"


def test_an_epochs_gap_goes_to_other_by_its_share_of_time_and_is_not_a_fit_phase() -> None:
    ledger = PhaseLedger()
    ledger.begin_epoch(gap_s=1.0)  # the epoch started at the previous end reading, 1 s before it began
    ledger.add_data_wait(1.0)
    split = ledger.end_epoch(_cpu(100.0, 5.0), validation=_cpu(20.0, 1.0))  # rest 80 J over 4 s
    assert {p: round(energy_j, 9) for p, energy_j in split.items()} == {"validation": 20.0, "data": 20.0, "train": 40.0, "other": 20.0}
    phases = ledger.with_other(_cpu(100.0, 5.0))
    assert round(phases["other"].energy_j, 9) == 20.0 and sum(m.energy_j for m in phases.values()) == pytest.approx(100.0)


def test_an_epoch_starts_at_the_previous_end_reading_only_after_a_gap_of_at_most_epoch_gap_s(mlflow_experiment: str) -> None:
    from mlflow_green.training.session import EPOCH_GAP_S

    now = [0.0]
    meter = FakeMeter({"cpu:0": 10.0, "ram:0": 0.0})  # every component scripted: 10 W in all
    session = TrainingSession(framework="test", tracker=EnergyTracker(meters=[meter], clock=lambda: now[0]))
    with mlflow.start_run():
        session.bind_run()
        session.begin_fit(planned_epochs=3)
        reads = []
        for epoch, gap_s in enumerate((1.0, EPOCH_GAP_S / 2, 10 * EPOCH_GAP_S)):
            now[0] += gap_s
            before = meter.reads
            session.begin_epoch(epoch)
            reads.append(meter.reads - before)
            now[0] += 2.0
            session.end_epoch(epoch, train_samples=10)
        total = session.end_fit()
    assert reads == [1, 0, 1]  # the first epoch and the one after a long gap read the meters
    assert [e["duration_s"] for e in session.epochs] == pytest.approx([2.0, 2.0 + EPOCH_GAP_S / 2, 2.0])
    assert session.epochs[1]["phases_j"]["other"] == pytest.approx(10.0 * EPOCH_GAP_S / 2)
    phases = session.ledger.with_other(total)
    assert sum(m.energy_j for m in phases.values()) == pytest.approx(total.energy_j, rel=1e-9)
    assert phases["other"].energy_j == pytest.approx(10.0 * (1.0 + EPOCH_GAP_S / 2 + 10 * EPOCH_GAP_S), rel=1e-6)


@pytest.mark.parametrize("ends", ["in training", "in a validation", "after the epoch's validation"])
def test_a_fit_ended_inside_an_epoch_splits_that_epoch_like_a_whole_one(mlflow_experiment: str, ends: str) -> None:
    """10 W throughout: 1 s setup, epoch 0 whole (3 s training, 1 s validation), then epoch 1 cut short."""
    now = [0.0]
    session = TrainingSession(framework="test", tracker=EnergyTracker(meters=[FakeMeter({"cpu:0": 10.0, "ram:0": 0.0})],
                                                                     clock=lambda: now[0]))
    with mlflow.start_run() as run:
        session.bind_run()
        session.begin_fit(planned_epochs=3)
        now[0] += 1.0
        for epoch in (0, 1):
            session.begin_epoch(epoch)
            session.add_data_wait(0.5)
            now[0] += 3.0
            if epoch == 1 and ends == "in training":
                break
            session.begin_phase("validation")
            now[0] += 1.0
            if epoch == 1 and ends == "in a validation":
                break
            session.end_phase("validation", samples=10, ends_epoch=True)
            if epoch == 1:
                now[0] += 0.25  # another callback's epoch-end work, then the fit fails before the epoch ends
                break
            session.end_epoch(epoch, train_samples=10)
        total = session.end_fit("FAILED")
    cut = {"in training": {"train": 25.0, "data": 5.0, "validation": 0.0, "other": 0.0},
           "in a validation": {"train": 25.0, "data": 5.0, "validation": 10.0, "other": 0.0},
           "after the epoch's validation": {"train": 25.0, "data": 5.0, "validation": 10.0, "other": 2.5}}[ends]
    expected = {"train": 25.0 + cut["train"], "data": 5.0 + cut["data"], "validation": 10.0 + cut["validation"],
                "other": 10.0 + cut["other"]}  # the setup, and what came after the cut epoch's validation
    phases = session.ledger.with_other(total)
    assert {p: round(m.energy_j, 6) for p, m in phases.items()} == expected
    metrics = MlflowClient().get_run(run.info.run_id).data.metrics
    assert {p: round(metrics[f"green/energy_{p}_kwh"] * 3.6e6, 6) for p in expected} == expected


# -- ranks -----------------------------------------------------------------------------------------
def test_one_exchange_merges_the_ranks_measurements_and_sums_their_counts() -> None:
    other_rank = {"m": {"epoch": _cpu(30.0, host="h2").to_dict()}, "n": {"train": 700}}
    ctx = DistributedContext(world_size=2, all_gather=lambda payload: [payload, other_rank])
    measured, counts = ctx.combine({"epoch": _cpu(10.0, host="h1")}, {"train": 700})
    assert measured["epoch"].energy_j == 40.0 and counts == {"train": 1400}


# -- one point per step ----------------------------------------------------------------------------
def test_a_step_logged_twice_keeps_one_point_with_the_last_values(mlflow_experiment: str) -> None:
    with mlflow.start_run() as run:
        out = SessionRun()
        out.bind()
        out.log({schema.ENERGY_KWH: 1.0, schema.POWER_W: 5.0}, step=0)
        out.log({schema.ENERGY_KWH: 2.0}, step=0)  # the end-of-fit totals at the last epoch's step
        out.log_changed({schema.MODEL_PARAMS: 10.0}, step=0)
        out.log_changed({schema.MODEL_PARAMS: 10.0, schema.MODEL_SPARSITY: 0.5}, step=1)
        assert out.next_free_step([schema.MODEL_SPARSITY], base=0) == 2
        out.close("FINISHED")
    client = MlflowClient()
    points = {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
              for key in (schema.ENERGY_KWH, schema.POWER_W, schema.MODEL_PARAMS, schema.MODEL_SPARSITY)}
    assert points == {
        schema.ENERGY_KWH: [(0, 2.0)], schema.POWER_W: [(0, 5.0)],
        schema.MODEL_PARAMS: [(0, 10.0)], schema.MODEL_SPARSITY: [(1, 0.5)],
    }


# -- pickling (ddp_spawn, copy.deepcopy) -----------------------------------------------------------
def test_config_tracker_and_session_pickle_and_deep_copy(mlflow_experiment: str) -> None:
    config = GreenConfig.resolve(region="FR", pue=1.3, environ={})
    for copied in (pickle.loads(pickle.dumps(config)), copy.deepcopy(config)):
        assert copied == config and isinstance(copied.sources, MappingProxyType)
        assert copied.sources["pue"] == "argument" and copied.carbon.region == "FRA"
    tracker = EnergyTracker(config=config, meters=[FakeMeter({"cpu:0": 10.0})])
    tracker.start()
    clone = pickle.loads(pickle.dumps(tracker))  # a running tracker's lock and meters are not copied
    tracker.stop()
    assert not clone.running and clone.config == config
    clone.start()
    assert "cpu" in clone.stop().components

    session = TrainingSession(framework="keras", tracker=EnergyTracker(meters=[FakeMeter({"cpu:0": 10.0})]))
    session.bind_run()
    session.begin_fit(planned_epochs=1)
    session.begin_epoch(0)
    session.end_epoch(0, train_samples=32)
    session.end_fit("FINISHED")
    for copied in (pickle.loads(pickle.dumps(session)), copy.deepcopy(session)):
        assert copied.run_id == session.run_id and copied.last_step == 0
        assert copied.carried.energy_j == session.carried.energy_j and copied.samples == {"train": 32}
        assert copied.output.context["run_id"] is None and copied.output.context["tracking_uri"] == mlflow.get_tracking_uri()


def test_a_session_that_evaluated_then_fits_in_the_same_run_counts_its_evaluation_once(mlflow_experiment: str) -> None:
    """10 W: an evaluation of 1 s, a fit, another evaluation of 1 s, one session, in the user's run."""
    now = [0.0]
    session = TrainingSession(framework="test", tracker=EnergyTracker(meters=[FakeMeter({"cpu:0": 10.0, "ram:0": 0.0})],
                                                                     clock=lambda: now[0]))
    with mlflow.start_run() as run:
        session.begin_eval("test")
        now[0] += 1.0
        session.end_eval("test", samples=10)
        session.bind_run()  # the fit's start: the run holds only this session's own evaluation
        session.begin_fit(planned_epochs=1)
        session.begin_epoch(0)
        now[0] += 1.0
        session.end_epoch(0, train_samples=5)
        session.end_fit("FINISHED")
        session.begin_eval("test")
        now[0] += 1.0
        session.end_eval("test", samples=10)
    history = MlflowClient().get_metric_history(run.info.run_id, schema.ENERGY_TEST_KWH)
    assert sorted((m.step, round(m.value * 3.6e6, 6)) for m in history) == [(0, 10.0), (1, 20.0)]


def test_a_session_left_bound_outside_any_fit_is_no_outer_call(mlflow_experiment: str) -> None:
    """A callback's model profile logged before it trained binds a run and stays bound; a later, unrelated fit on
    the same thread is not inside it (no child run)."""
    from mlflow_green.training.inspection import ModelProfile

    first = TrainingSession(framework="test", tracker=EnergyTracker(meters=[FakeMeter({"cpu:0": 10.0})]))
    first.log_profile(ModelProfile(framework="keras", params=10, params_unique=10, params_trainable=10, params_nonzero=10,
                                   sparsity=0.0, structured_sparsity=0.0, weight_bits=32.0, size_bytes=40,
                                   compressed_size_bytes=40))
    mlflow.end_run()  # the user ends whatever run is active
    second = TrainingSession(framework="test", tracker=EnergyTracker(meters=[FakeMeter({"cpu:0": 10.0})]))
    second.bind_run()
    second.begin_fit(planned_epochs=1)
    second.end_fit()
    assert first.run_id is not None and second.run_id != first.run_id
    assert "mlflow.parentRunId" not in MlflowClient().get_run(second.run_id).data.tags
