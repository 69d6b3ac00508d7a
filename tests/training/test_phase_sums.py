"""The phase ledger's float running totals equal the same epochs added up as measurements."""

from __future__ import annotations

import copy
import pickle
import random

import pytest

from mlflow_green.measure.device_energy import evolve
from mlflow_green.measure.readings import DeviceEnergy, Measurement
from mlflow_green.training.phase_sums import PhaseSum
from mlflow_green.training.phases import EMPTY, FIT_PHASES, OTHER, PhaseLedger


def _window(rng: random.Random, duration_s: float, epoch: int) -> Measurement:
    """One window's devices as meters produce them, with the changes a long fit brings now and then."""
    devices = [
        DeviceEnergy("cpu:0", "cpu", "rapl", rng.choice(["counter"] * 8 + ["estimate"]), rng.uniform(0, 50) * duration_s,
                     duration_s, host="a", scope="process", share=rng.choice(["cpu-time"] * 6 + ["cpu-time+time"]),
                     note=rng.choice([""] * 9 + ["RAPL counter reset"])),
        DeviceEnergy("ram:0", "ram", "estimate", "estimate", rng.uniform(0, 5) * duration_s, duration_s, host="a",
                     scope="process", share="rss"),
        DeviceEnergy("cpu:0", "cpu", "rapl", "counter", rng.uniform(0, 50) * duration_s, duration_s, host="b"),
    ]
    if epoch >= 3:  # a GPU that joins mid-fit (after a fail-over, say), sampled until its counter works
        devices.insert(1, DeviceEnergy("gpu:GPU-1", "gpu", "nvml", "sampled" if epoch < 6 else "counter",
                                       rng.uniform(0, 300) * duration_s, duration_s, host="a"))
    rng.shuffle(devices) if rng.random() < 0.1 else None  # a meter that lists its devices in another order
    return Measurement(duration_s, tuple(devices))


def _part(rng: random.Random, epoch: Measurement, fraction: float) -> Measurement:
    """A sub-window of ``epoch`` (its validation, the stretch after it): at most ``fraction`` of each device."""
    duration_s = epoch.duration_s * fraction
    return Measurement(duration_s, tuple(
        DeviceEnergy(d.device_id, d.component, d.meter, d.provenance, d.energy_j * fraction * rng.uniform(0.5, 1.2),
                     duration_s, host=d.host, scope=d.scope, share=d.share, note=d.note)
        for d in epoch.devices if rng.random() < 0.9))


class ReferenceLedger:
    """The phase split and totals by measurement arithmetic (``-``, ``scaled``, ``+``), as the ledger had them."""

    def __init__(self, carried: dict[str, Measurement]) -> None:
        self.carried, self.current = dict(carried), {}

    def end_epoch(self, epoch: Measurement, validation: Measurement, after: Measurement, data_wait_s: float,
                  gap_s: float) -> dict[str, float]:
        rest = epoch - validation - after
        data_share = gap_share = 0.0
        if rest.duration_s > 0:
            data_share = min(data_wait_s / rest.duration_s, 1.0)
            gap_share = min(gap_s / rest.duration_s, 1.0 - data_share)
        split = {"validation": validation, "data": rest.scaled(data_share, share="time"),
                 "train": rest.scaled(1.0 - data_share - gap_share, share="time")}
        for phase, part in split.items():
            self.current[phase] = self.current.get(phase, EMPTY) + part
        if gap_share > 0 or after.devices:
            split[OTHER] = (rest.scaled(gap_share, share="time") if gap_share > 0 else EMPTY) + after
        return {phase: part.energy_j for phase, part in split.items()}

    def totals(self) -> dict[str, Measurement]:
        phases = dict(self.carried)
        for phase, m in self.current.items():
            phases[phase] = phases.get(phase, EMPTY) + m
        return phases

    def with_other(self, total: Measurement) -> dict[str, Measurement]:
        phases = {phase: EMPTY for phase in FIT_PHASES} | {p: m for p, m in self.totals().items() if p in FIT_PHASES}
        other = total
        for m in phases.values():
            other = other - m
        return phases | {OTHER: other}


def _same(a: Measurement, b: Measurement) -> None:
    assert a.duration_s == pytest.approx(b.duration_s, rel=1e-12, abs=1e-12)
    assert [(d.host, d.device_id, d.component, d.meter, d.provenance, d.share, d.scope, d.note) for d in a.devices] == \
        [(d.host, d.device_id, d.component, d.meter, d.provenance, d.share, d.scope, d.note) for d in b.devices]
    assert [d.energy_j for d in a.devices] == pytest.approx([d.energy_j for d in b.devices], rel=1e-12, abs=1e-9)
    assert [d.duration_s for d in a.devices] == pytest.approx([d.duration_s for d in b.devices], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_the_ledger_s_totals_and_phase_joules_equal_the_epochs_added_up_as_measurements(seed: int) -> None:
    rng = random.Random(seed)
    carried = {}
    if seed % 3 == 0:  # a second fit in the run, or a resumed checkpoint: earlier phase totals carried
        carried = {phase: _window(rng, rng.uniform(1, 30), 0) for phase in (*FIT_PHASES, "test")}
    ledger, reference = PhaseLedger(), ReferenceLedger(carried)
    ledger.reset(carried)
    total = EMPTY
    for part in carried.values():  # the run's total holds the earlier fits'
        total = total + part
    for epoch_no in range(40):
        epoch = _window(rng, rng.uniform(0.0, 5.0) if rng.random() > 0.05 else 0.0, epoch_no)
        validation = _part(rng, epoch, rng.uniform(0.0, 0.4)) if rng.random() < 0.7 else EMPTY
        after = _part(rng, epoch, rng.uniform(0.0, 0.1)) if rng.random() < 0.3 else EMPTY
        data_wait_s, gap_s = rng.uniform(0, epoch.duration_s), rng.choice([0.0, rng.uniform(0, 0.5)])
        ledger.begin_epoch(gap_s)
        ledger.add_data_wait(data_wait_s)
        split = ledger.end_epoch(epoch, validation=validation, after=after)
        expected_split = reference.end_epoch(epoch, validation, after, data_wait_s, gap_s)
        assert split == pytest.approx(expected_split, rel=1e-12, abs=1e-9) and list(split) == list(expected_split)
        total = total + epoch + _window(rng, rng.uniform(0, 0.2), epoch_no)  # with the time between epochs
        joules = ledger.energy_with_other_j(total)
        expected = reference.with_other(total)
        assert list(joules) == list(expected)
        assert joules == pytest.approx({p: m.energy_j for p, m in expected.items()}, rel=1e-12, abs=1e-9)
    totals, expected_totals = ledger.totals(), reference.totals()
    assert list(totals) == list(expected_totals)
    for phase in totals:
        _same(totals[phase], expected_totals[phase])
    for phase, m in ledger.with_other(total).items():
        _same(m, reference.with_other(total)[phase])
    assert sum(ledger.energy_with_other_j(total).values()) == pytest.approx(total.energy_j, rel=1e-9)


def test_a_provenance_note_or_scope_that_changes_mid_fit_is_combined_into_the_phase_total() -> None:
    total = PhaseSum()
    counter = Measurement(1.0, (DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 10.0, 1.0, host="h"),))
    estimated = Measurement(1.0, (DeviceEnergy("cpu:0", "cpu", "rapl", "estimate", 5.0, 1.0, host="h", note="gap"),))
    for part in (counter, estimated, counter):
        total.add(part, fraction=0.5, share="time")
    [device] = total.measurement().devices
    assert (device.energy_j, device.duration_s, device.provenance, device.note, device.basis) == \
        (12.5, 1.5, "estimate", "gap", "estimate, apportioned by time share")
    for change, expected in (({"note": "RAPL counter reset"}, ("counter", "RAPL counter reset", "machine")),
                             ({"scope": "process"}, ("counter", "", "process"))):
        changed = PhaseSum()  # a note alone, a scope alone (the same provenance and share) is kept too
        for part in (counter, Measurement(1.0, (evolve(counter.devices[0], **change),)), counter):
            changed.add(part)
        [device] = changed.measurement().devices
        assert (device.energy_j, (device.provenance, device.note, device.scope)) == (30.0, expected)


def test_a_ledger_copies_and_pickles_with_its_running_totals() -> None:
    ledger = PhaseLedger()
    ledger.begin_epoch()
    ledger.end_epoch(Measurement(2.0, (DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 20.0, 2.0),)), validation=EMPTY)
    for copied in (copy.deepcopy(ledger), pickle.loads(pickle.dumps(ledger))):
        assert copied.totals()["train"].energy_j == 20.0
        copied.close_fit()
        assert copied.carried["train"].energy_j == 20.0 and not copied.current
    assert ledger.current["train"].energy_j == 20.0
