"""Boundary readings captured now and worked out later (``tracker.mark()``): the same counters, in order."""

from __future__ import annotations

import copy
import pickle
import threading

import pytest

from mlflow_green import EnergyTracker
from mlflow_green.errors import MeterError
from mlflow_green.measure.codecarbon_model import resolve
from mlflow_green.measure.meters.estimate import EstimateMeter
from mlflow_green.measure.pending_snapshot import PendingSnapshot
from mlflow_green.measure.readings import Snapshot
from mlflow_green.testing import FakeMachine, FakeMeter

GIB = 2**30
XEON = "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz"


class _Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def _tracker(machine: FakeMachine, clock: _Clock) -> EnergyTracker:
    """An estimate meter billing a scripted process tree on a scripted machine (process scope)."""
    model = resolve(cpu_model=XEON, logical_cpus=2, ram_total_bytes=16 * GIB, sockets=1)
    meter = EstimateMeter(cpu_times=machine.cpu_times, model=model)
    return EnergyTracker(meters=[meter], clock=clock, processes=machine.tree, scope="process")


def _started() -> tuple[FakeMachine, _Clock, EnergyTracker]:
    """A scripted machine and clock, and a started tracker over them."""
    machine, clock = FakeMachine(cpus=2), _Clock()
    tracker = _tracker(machine, clock)
    tracker.start()
    return machine, clock, tracker


def _script(machine: FakeMachine, clock: _Clock, step: int) -> None:
    """The machine's next stretch: a varying load, so that each window's share differs."""
    seconds = 1.0 + step % 3
    clock.now_s += seconds
    machine.advance(seconds, tree_cpu_s=seconds * (0.2 + 0.25 * (step % 4)), other_cpu_s=seconds * 0.1)


def _windows(take: str, resolve_in_between: bool = False) -> list[Snapshot]:
    machine, clock = FakeMachine(cpus=2, rss_bytes=2 * GIB), _Clock()
    tracker = _tracker(machine, clock)
    tracker.start()
    snaps = []
    for step in range(8):
        _script(machine, clock, step)
        snaps.append(tracker.mark() if take == "mark" else tracker.snapshot())
        if resolve_in_between and step % 3 == 0:
            tracker.resolve_marks()
    _script(machine, clock, 8)
    tracker.stop()
    return [Snapshot(s.timestamp_s, s.devices, s.host) for s in snaps]


def test_marks_hold_the_counters_snapshots_taken_then_hold() -> None:
    read = _windows("snapshot")
    marked = _windows("mark")
    assert marked == read
    assert _windows("mark", resolve_in_between=True) == read
    assert len({s.devices[0].energy_j for s in read}) == len(read)  # the script made every window differ


def test_a_mark_is_worked_out_before_any_later_reading_and_in_capture_order() -> None:
    machine, clock, tracker = _started()
    _script(machine, clock, 0)
    first = tracker.mark()
    assert isinstance(first, PendingSnapshot) and "devices" not in first.__dict__  # nothing worked out yet
    _script(machine, clock, 1)
    second = tracker.mark()
    _script(machine, clock, 2)
    now = tracker.snapshot()  # a later reading works the earlier ones out first, in order
    assert "devices" in first.__dict__ and "devices" in second.__dict__
    energies = [s.devices[0].energy_j for s in (tracker.start_snapshot, first, second, now)]
    assert energies == sorted(energies) and len(set(energies)) == 4
    assert (second - first).duration_s == pytest.approx(2.0)
    tracker.stop()


def test_marks_are_worked_out_by_another_thread_while_the_training_thread_reads() -> None:
    machine, clock, tracker = _started()
    marks = []
    for step in range(50):
        _script(machine, clock, step)
        marks.append(tracker.mark())
        worker = threading.Thread(target=tracker.resolve_marks)
        worker.start()
        if step % 7 == 0:
            tracker.snapshot()
        worker.join()
    total = tracker.stop()
    energies = [m.devices[0].energy_j for m in marks]
    assert energies == sorted(energies)
    assert total.energy_j >= marks[-1].devices[0].energy_j - tracker.start_snapshot.devices[0].energy_j


def test_a_meter_that_cannot_capture_is_read_at_once() -> None:
    machine, clock, tracker = _started()
    machine.tree.alone = False  # a tree with children: the scanner must look at them
    _script(machine, clock, 0)
    assert type(tracker.mark()) is Snapshot
    with_fake = EnergyTracker(meters=[FakeMeter({"cpu:0": 5.0, "ram:0": 1.0})])  # a plugin without capture
    with_fake.start()
    assert type(with_fake.mark()) is Snapshot
    with_fake.stop(), tracker.stop()


def test_a_mark_compares_pickles_and_copies_as_the_snapshot_it_stands_for() -> None:
    machine, clock, tracker = _started()
    _script(machine, clock, 0)
    mark = tracker.mark()
    for copied in (pickle.loads(pickle.dumps(mark)), copy.deepcopy(mark)):
        assert type(copied) is Snapshot and copied == mark and mark == copied
    assert hash(mark) == hash(mark.resolved()) and "cpu:0" in repr(mark)
    tracker.stop()


def test_a_window_closed_with_marks_measures_what_end_measures() -> None:
    results = {}
    for how in ("close", "end"):
        machine, clock = FakeMachine(cpus=2), _Clock()
        tracker = _tracker(machine, clock)
        tracker.start()
        tracker.begin("validation")
        _script(machine, clock, 1)
        if how == "close":
            begin, end = tracker.close("validation")
            results[how] = end - begin
        else:
            results[how] = tracker.end("validation")
        tracker.stop()
        assert [w.name for w in tracker.windows] == ["validation"]
    assert results["close"] == results["end"]


def _counters(snap: Snapshot) -> dict[str, float]:
    return {d.device_id: d.energy_j for d in snap.devices}


def test_a_figure_shown_at_once_previews_a_mark_with_the_energy_its_reading_will_hold() -> None:
    """The progress bar's figures come from previews (nothing read on the training thread); the
    readings worked out later hold exactly those numbers, whatever came between."""
    machine, clock = FakeMachine(cpus=2, rss_bytes=2 * GIB), _Clock()
    tracker = _tracker(machine, clock)
    tracker.start()
    shown: list[tuple[Snapshot, dict[str, float]]] = []
    for step in range(12):
        _script(machine, clock, step)
        machine.tree.rss += (step % 5) * 2**27  # memory moves too: RAM is integrated over each interval
        mark = tracker.mark()
        assert isinstance(mark, PendingSnapshot)
        if step % 2:  # an epoch's end: its figures, and the epoch's start again (previewed once before)
            before = dict(mark.__dict__)
            preview, again = tracker.energies_j(mark, shown[-1][0])
            assert "devices" not in mark.__dict__ and mark.__dict__ == before  # previewed, not read
            assert again == shown[-1][1]
            shown.append((mark, preview))
        else:
            shown.append((mark, tracker.energies_j(mark)[0]))
        if step % 5 == 4:
            tracker.resolve_marks()  # the epochs' thread catches up now and then
        if step == 7:
            tracker.snapshot()  # a read between marks
    tracker.stop()
    assert [preview for _, preview in shown] == [_counters(mark) for mark, _ in shown]  # exactly, not approximately
    assert len({preview["ram:0"] for _, preview in shown}) == len(shown)


def test_a_mark_a_meter_cannot_preview_is_worked_out_for_the_figure() -> None:
    class CapturingOnly(EstimateMeter):
        def preview_captured(self, captures, components, state=None):  # type: ignore[no-untyped-def]
            return None

    machine, clock = FakeMachine(cpus=2, rss_bytes=GIB), _Clock()
    model = resolve(cpu_model=XEON, logical_cpus=2, ram_total_bytes=16 * GIB, sockets=1)
    tracker = EnergyTracker(meters=[CapturingOnly(cpu_times=machine.cpu_times, model=model)], clock=clock,
                            processes=machine.tree, scope="process")
    tracker.start()
    _script(machine, clock, 1)
    mark = tracker.mark()
    assert isinstance(mark, PendingSnapshot) and "devices" not in mark.__dict__
    figure = tracker.energies_j(mark)[0]
    assert "devices" in mark.__dict__ and figure == _counters(mark) and figure["cpu:0"] > 0
    tracker.stop()


class _DirectCapture(FakeMeter):
    """A plugin meter with a direct capture (``capturer()``): its raw input is the instant; counted, and failing
    on demand where the capture is worked out."""

    def __init__(self) -> None:
        super().__init__({"cpu:0": 10.0, "ram:0": 1.0}, name="direct")
        self.direct_captures = 0
        self.failing = False

    def capturer(self):  # type: ignore[no-untyped-def]
        def capture() -> float:
            self.direct_captures += 1
            return 0.0
        return capture

    def capture(self, now_s: float) -> object:
        raise AssertionError("capture(now_s) called although the meter has a direct capture")

    def read_captured(self, now_s: float, raw: object):  # type: ignore[no-untyped-def]
        return self.read(now_s)

    def read(self, now_s: float):  # type: ignore[no-untyped-def]
        if self.failing:
            raise MeterError("direct: scripted failure")
        return super().read(now_s)


def test_a_meters_direct_capture_is_taken_at_boundaries_and_dropped_once_it_fails_over() -> None:
    """The boundary calls the one meter's ``capturer()`` result (not ``capture(now_s)``); after that meter fails
    over, the boundaries read its replacement (which captures nothing) at once, never the failed meter again."""
    clock = _Clock()
    direct, spare = _DirectCapture(), FakeMeter({"cpu:0": 20.0, "ram:0": 2.0}, name="spare", priority=10)
    tracker = EnergyTracker(meters=[direct, spare], clock=clock)
    tracker.start()
    clock.now_s = 1.0
    first = tracker.mark()
    assert isinstance(first, PendingSnapshot) and direct.direct_captures == 1
    assert first.devices[0].energy_j == pytest.approx(10.0) and first.devices[0].meter == "direct"
    direct.failing = True
    clock.now_s = 2.0
    tracker.mark().devices  # its reading fails: the CPU goes over to the spare meter
    captures = direct.direct_captures
    clock.now_s = 3.0
    after = tracker.mark()
    assert type(after) is Snapshot and direct.direct_captures == captures
    assert after.devices[0].meter == "spare"
    assert "spare" in tracker.meters_tag()
    tracker.stop()
