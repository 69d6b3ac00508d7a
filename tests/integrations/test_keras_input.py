"""The watched data iterator of a Keras call on torch and JAX (``_keras_input``): what each batch adds to the guard."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("keras")

from mlflow_green.integrations._keras_guard import CallGuard  # noqa: E402
from mlflow_green.integrations._keras_input import watched_source  # noqa: E402
from mlflow_green.integrations._keras_samples import PassBatching  # noqa: E402


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


def test_over_arrays_the_batches_are_counted_and_their_samples_follow_from_the_batching() -> None:
    guard, aborts = guard_and_aborts()
    guard.batching = PassBatching(batch_size=4, batches=3, last_size=2)  # as the fit's watch finds arrays of 10 rows
    batches = [(Array(4, 2), Array(4)), (Array(4, 2), Array(4)), (Array(2, 2), Array(2))]
    assert list(watched_source(lambda: slow(batches, 0.01), guard, True)()) == batches
    assert (guard.batches, guard.samples, aborts) == (3, 10, [])
    assert 0.03 <= guard.data_wait_s < 0.2
    guard.reset_counts()
    assert (guard.batches, guard.samples, guard.trained_samples, guard.data_wait_s) == (0, 0, 0, 0.0)

    def failing():
        yield batches[0]
        raise OSError("disk")

    with pytest.raises(OSError):
        list(watched_source(failing, guard, True)())
    assert [type(e) for e in aborts] == [OSError] and (guard.batches, guard.samples) == (1, 4)


def test_over_arrays_the_trained_samples_are_those_of_the_batches_read_when_the_fits_last_step_finished() -> None:
    guard, aborts = guard_and_aborts()
    guard.batching = PassBatching(batch_size=4, batches=3, last_size=2)
    reads = watched_source(lambda: iter([(Array(4, 2),), (Array(4, 2),), (Array(2, 2),)]), guard, True)()
    trains = guard._guarded_step(lambda state, data: next(data), training=True)  # the fit's step (JAX: reads inside)
    fails = guard._guarded_step(lambda state, data: (next(data), 1 / 0), training=True)
    trains(None, reads)
    assert guard.trained_samples == 4
    guard._guarded_step(lambda state, data: None, training=True)(None, None)  # a callback's train_on_batch: reads none
    trains(None, reads)
    assert (guard.batches, guard.trained_samples) == (2, 8)
    with pytest.raises(ZeroDivisionError):
        fails(None, reads)  # read, never trained
    assert (guard.batches, guard.samples, guard.trained_samples) == (3, 10, 8)
    assert [type(e) for e in aborts] == [ZeroDivisionError]


def test_a_validation_input_read_inside_the_step_is_left_alone_unless_it_must_be_counted() -> None:
    from keras.src.trainers.epoch_iterator import EpochIterator

    guard, _ = guard_and_aborts()  # JAX reads each batch inside the (guarded) step function, which sees its errors
    arrays = EpochIterator(x=np.zeros((10, 2), "float32"), y=np.zeros(10, "int64"), batch_size=4)
    unknown_size = type("EpochIterator", (), {"data_adapter": None})()
    assert watched_source(lambda: iter([]), guard, False, arrays, reads_in_step=True) is None
    assert watched_source(lambda: iter([]), guard, False, arrays, reads_in_step=False) is not None  # torch: read outside
    assert watched_source(lambda: iter([]), guard, False, unknown_size, reads_in_step=True) is not None  # counted
    assert watched_source(lambda: iter([]), guard, True, arrays, reads_in_step=True) is not None  # the training input
