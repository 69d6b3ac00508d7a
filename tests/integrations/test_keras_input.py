"""The watched data iterator of a Keras call on torch and JAX (``_keras_input``): what each batch adds to the guard."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("keras")

from mlflow_green.integrations._keras_guard import CallGuard  # noqa: E402
from mlflow_green.integrations._keras_input import watched_source  # noqa: E402


class Array:
    def __init__(self, *shape: int | None) -> None:
        self.shape = shape


class Size(tuple):  # torch.Size is a tuple subclass
    pass


class Model:
    stop_training = False


def guard_and_aborts() -> tuple[CallGuard, list[BaseException]]:
    aborts: list[BaseException] = []
    return CallGuard(Model(), aborts.append, python_input=True), aborts


def slow(batches: list[object], wait_s: float):
    for batch in batches:
        time.sleep(wait_s)
        yield batch


@pytest.mark.parametrize("batch, samples", [
    ((Array(32, 8), Array(32)), 32),
    ((Array(32, 8), Array(32), Array(32)), 32),
    (({"image": Array(16, 3), "mask": Array(16)}, Array(16)), 16),
    ((((Array(8, 2), Array(8, 2)), Array(8)),), 8),
    ([Array(4, 2), Array(4)], 4),
    (Array(5, 3), 5),
    ((Array(None, 3), Array(None)), 0),  # a dimension not known: not counted, and no error
    ((Array(), Array()), 0),
    ((type("T", (), {"shape": Size((7, 3))})(), None), 7),
    ((object(), 1), 0),
])
def test_each_training_batch_is_counted_by_its_leading_dimension(batch: object, samples: int) -> None:
    guard, aborts = guard_and_aborts()
    read = list(watched_source(lambda: iter([batch] * 3), guard, True)())
    assert read == [batch] * 3
    assert (guard.batches, guard.samples, aborts) == (3, 3 * samples, [])


def test_the_time_inside_each_next_is_the_input_wait() -> None:
    guard, _ = guard_and_aborts()
    iterator = watched_source(lambda: slow([(Array(2),)] * 4, 0.02), guard, True)()
    start_s = time.perf_counter()
    for _ in iterator:
        time.sleep(0.03)  # the step: not input wait
    wall_s = time.perf_counter() - start_s
    assert 0.08 <= guard.data_wait_s < 0.08 + (wall_s - 0.2) + 0.02
    assert guard.batches == 4


def test_an_error_in_the_input_tells_the_guard_once_and_goes_on() -> None:
    guard, aborts = guard_and_aborts()

    def failing():
        yield (Array(3),)
        raise ValueError("bad record")

    iterator = watched_source(failing, guard, True)()
    assert next(iterator)[0].shape == (3,)
    with pytest.raises(ValueError, match="bad record"):
        next(iterator)
    assert [type(e) for e in aborts] == [ValueError]
    assert (guard.batches, guard.samples) == (1, 3)


def test_the_inputs_end_and_an_iterator_dropped_midway_are_not_errors() -> None:
    guard, aborts = guard_and_aborts()
    assert list(watched_source(lambda: iter([]), guard, True)()) == []
    iterator = watched_source(lambda: iter([(Array(2),)] * 5), guard, True)()
    next(iterator)
    iterator.close()  # Keras drops the epoch's iterator after steps_per_epoch batches, or on stop_training
    with pytest.raises(StopIteration):
        next(iterator)
    assert aborts == [] and guard.batches == 1


def test_a_keyboard_interrupt_from_the_input_ends_the_measurement() -> None:
    guard, aborts = guard_and_aborts()

    def interrupted():
        raise KeyboardInterrupt
        yield

    with pytest.raises(KeyboardInterrupt):
        next(watched_source(interrupted, guard, True)())
    assert [type(e) for e in aborts] == [KeyboardInterrupt]


def test_a_validation_input_is_watched_and_counted_only_where_its_size_is_unknown() -> None:
    guard, aborts = guard_and_aborts()
    batches = [(Array(4, 2), Array(4))] * 2
    assert list(watched_source(lambda: iter(batches), guard, False)()) == batches  # no epoch iterator: watched only
    assert (guard.batches, guard.samples, guard.test_samples, guard.data_wait_s) == (0, 0, 0, 0.0)
    assert list(watched_source(lambda: iter(batches), guard, False, epoch_iterator=object())()) == batches  # size unknown
    assert guard.test_samples == 8 and guard.batches == 0

    def failing():
        yield batches[0]
        raise OSError("disk")

    for epoch_iterator in (None, object()):
        guard, aborts = guard_and_aborts()
        with pytest.raises(OSError):
            list(watched_source(failing, guard, False, epoch_iterator=epoch_iterator)())
        assert [type(e) for e in aborts] == [OSError]
