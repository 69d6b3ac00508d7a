"""A signal handler that raises in the middle of a measurement: its error is never taken for a meter's."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Iterator
from types import FrameType

import pytest

from mlflow_green import EnergyTracker
from mlflow_green.errors import MeterError
from mlflow_green.measure.codecarbon_model import resolve
from mlflow_green.measure.meters.estimate import EstimateMeter
from mlflow_green.measure.signal_safety import inside_own_code, passes_through, raised_by_signal_handler
from mlflow_green.testing import FakeMachine, FakeMeter
from mlflow_green.testing.fake_processes import FakeProcessTree


class Preempted(RuntimeError):
    """What a scheduler's (or a framework's) SIGTERM handler raises."""


class _Handler:
    def __call__(self, signum: int, frame: FrameType | None) -> None:
        raise Preempted("SIGTERM")


def _raising(signum: int, frame: FrameType | None) -> None:
    raise Preempted("SIGTERM")


@pytest.fixture(params=["function", "partial", "object"])
def raising_handler(request: pytest.FixtureRequest) -> Iterator[None]:
    """A SIGTERM handler that raises, in the forms Python accepts."""
    handler = {"function": _raising, "partial": functools.partial(_raising), "object": _Handler()}[request.param]
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _SignalledMeter(FakeMeter):
    """Its second read is interrupted by SIGTERM; ``fail`` makes it fail as a meter instead."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__({"cpu:0": 10.0, "ram:0": 1.0})
        self.read_count, self.fail = 0, fail

    def read(self, now_s: float):  # type: ignore[no-untyped-def]
        self.read_count += 1
        if self.read_count == 2:
            if self.fail:
                raise MeterError("a meter's own failure")
            signal.raise_signal(signal.SIGTERM)
        return super().read(now_s)


def test_an_error_out_of_a_signal_handler_in_a_meter_read_comes_out(raising_handler: None) -> None:
    tracker = EnergyTracker(meters=[_SignalledMeter()])
    tracker.start()
    with pytest.raises(Preempted):
        tracker.snapshot()
    assert tracker.meters_tag() == "cpu:fake,ram:fake" and not tracker.faults  # not failed over
    tracker.stop()


def test_a_meters_own_failure_is_still_failed_over(raising_handler: None) -> None:
    tracker = EnergyTracker(meters=[_SignalledMeter(fail=True)])
    tracker.start()
    tracker.snapshot()
    assert ">" in tracker.meters_tag() and tracker.faults
    tracker.stop()


def test_an_error_out_of_a_signal_handler_while_the_devices_are_waited_for_comes_out(raising_handler: None) -> None:
    tracker = EnergyTracker(meters=[FakeMeter({"cpu:0": 10.0})], synchronize=lambda: signal.raise_signal(signal.SIGTERM))
    with pytest.raises(Preempted):
        tracker.start()  # the start's read waits for the devices first


def test_an_error_out_of_a_signal_handler_in_a_boundary_capture_comes_out(raising_handler: None) -> None:
    class Interrupted(FakeProcessTree):
        def capture(self) -> tuple[float, int] | None:
            signal.raise_signal(signal.SIGTERM)
            return super().capture()

    machine = FakeMachine(cpus=2)
    model = resolve(cpu_model="Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", logical_cpus=2, ram_total_bytes=2**34, sockets=1)
    tracker = EnergyTracker(meters=[EstimateMeter(cpu_times=machine.cpu_times, model=model)], processes=Interrupted(),
                            scope="process")
    tracker.start()
    with pytest.raises(Preempted):
        tracker.mark()
    assert not tracker.faults


def test_an_ordinary_error_is_not_a_signals() -> None:
    try:
        raise RuntimeError("a meter's")
    except RuntimeError as exc:
        assert not raised_by_signal_handler(exc)


def test_own_code_is_told_from_a_wrapper_that_passes_the_frameworks_work_through() -> None:
    here = sys._getframe()
    assert not inside_own_code(here)  # a test is the user's code
    seen: list[bool] = []
    tracker = EnergyTracker(meters=[FakeMeter({"cpu:0": 1.0})], synchronize=lambda: seen.append(inside_own_code(sys._getframe())))
    tracker.start()  # the synchronize callback runs inside the tracker's read: our code is on the stack
    tracker.stop()
    assert seen and all(seen)

    def framework_step() -> bool:
        return inside_own_code(sys._getframe())

    from mlflow_green.integrations._keras_guard import CallGuard  # its wrappers pass the step through

    class Model:
        stop_training = False

    wrapped = CallGuard(Model(), lambda exc: None, python_input=False)._guarded_step(framework_step, training=False)
    assert wrapped() is False
    assert passes_through(framework_step) is framework_step


def test_a_capture_whose_read_a_signal_cut_short_is_read_later(raising_handler: None) -> None:
    class InterruptedOnce(EstimateMeter):
        interrupted = False

        def read_captured(self, now_s, raw):  # type: ignore[no-untyped-def]
            if not InterruptedOnce.interrupted:
                InterruptedOnce.interrupted = True
                signal.raise_signal(signal.SIGTERM)
            return super().read_captured(now_s, raw)

    machine = FakeMachine(cpus=2)
    model = resolve(cpu_model="Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", logical_cpus=2, ram_total_bytes=2**34, sockets=1)
    tracker = EnergyTracker(meters=[InterruptedOnce(cpu_times=machine.cpu_times, model=model)], processes=machine.tree,
                            scope="process")
    tracker.start()
    machine.advance(1.0, tree_cpu_s=0.5)
    mark = tracker.mark()
    with pytest.raises(Preempted):
        tracker.resolve_marks()
    assert mark.devices and not tracker.faults  # still queued, read at the next need
    tracker.stop()
