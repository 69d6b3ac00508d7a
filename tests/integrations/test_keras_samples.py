"""The sample counts of a fit's iterators (``AdapterCounts``): right, asked once, never kept alive."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from keras.src.trainers.epoch_iterator import EpochIterator  # noqa: E402

from mlflow_green.integrations._keras_samples import AdapterCounts, PassBatching, pass_batching  # noqa: E402


def _iterator(n: int = 1400, batch_size: int = 32) -> EpochIterator:
    return EpochIterator(x=np.zeros((n, 4), "float32"), y=np.zeros(n, "int64"), batch_size=batch_size)


def test_a_count_is_the_samples_of_a_pass_with_its_partial_last_batch() -> None:
    counts = AdapterCounts()
    iterator = _iterator()
    assert counts(iterator) == 1400  # 43 batches of 32 and one of 24
    assert counts(iterator) == 1400
    assert counts(_iterator(100, 10)) == 100


class _Adapter:
    """A data adapter as Keras's: its figures, counted as they are read."""

    def __init__(self, num_batches: int | None, batch_size: int = 32) -> None:
        self.reads = 0
        self._num_batches, self._batch_size = num_batches, batch_size
        self.has_partial_batch, self.partial_batch_size = False, None

    @property
    def num_batches(self) -> int | None:
        return self._num_batches

    @property
    def batch_size(self) -> int:
        self.reads += 1  # read once per count worked out
        return self._batch_size


class _Iterator:
    def __init__(self, adapter: _Adapter) -> None:
        self.data_adapter = adapter

    @property
    def num_batches(self) -> int | None:
        return self.data_adapter._num_batches


def test_a_known_count_is_asked_once_per_iterator_an_unknown_one_again() -> None:
    counts = AdapterCounts()
    known, unknown = _Iterator(_Adapter(44)), _Iterator(_Adapter(None))
    assert [counts(known) for _ in range(5)] == [44 * 32] * 5
    assert [counts(unknown) for _ in range(3)] == [None] * 3
    assert known.data_adapter.reads == 1 and unknown.data_adapter.reads == 3
    unknown.data_adapter._num_batches = 20  # tf.data of unknown cardinality: known once its first pass ended
    assert counts(unknown) == 640 and counts(unknown) == 640 and unknown.data_adapter.reads == 4


def test_the_counts_never_keep_an_iterator_alive() -> None:
    """fit drops its validation iterator before ``on_train_end``: were it held here, its teardown (and
    its dataset's) would run inside the callback's hook when the counts are cleared."""
    counts = AdapterCounts()
    iterator = _iterator()
    assert counts(iterator) == 1400
    ref = weakref.ref(iterator)
    del iterator
    gc.collect()
    assert ref() is None
    counts.clear()


def test_arrays_have_a_known_batching_other_inputs_are_counted_batch_by_batch() -> None:
    batching = pass_batching(_iterator())
    assert batching == PassBatching(batch_size=32, batches=44, last_size=24)
    assert [batching.samples(n) for n in (0, 1, 43, 44, 45, 88)] == [0, 32, 1376, 1400, 1432, 2800]
    assert pass_batching(_iterator(96, 32)) == PassBatching(32, 3, 32)  # no partial batch
    stepped = EpochIterator(x=np.zeros((100, 4), "float32"), y=np.zeros(100, "int64"), batch_size=10, steps_per_epoch=4)
    assert pass_batching(stepped) is None  # epochs that are not whole passes: the batches read tell

    def generator():
        while True:
            yield np.zeros((8, 4), "float32"), np.zeros(8, "int64")

    class Rows(keras.utils.PyDataset):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int):
            return np.zeros((5 + i, 4), "float32"), np.zeros(5 + i, "int64")  # a batch size of its own each

    assert pass_batching(EpochIterator(x=generator(), steps_per_epoch=3)) is None
    assert pass_batching(EpochIterator(x=Rows())) is None
    assert pass_batching(None) is None and pass_batching(_Iterator(_Adapter(44))) is None  # not Keras's arrays
