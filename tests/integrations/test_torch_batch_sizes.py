"""Samples in a batch, as the Lightning and Hugging Face callbacks count them (one function for both)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mlflow_green.integrations._torch_batches import batch_size  # noqa: E402


@pytest.mark.parametrize(("batch", "expected"), [
    ((torch.zeros(8, 3), torch.zeros(8)), 8),
    ([torch.zeros(8, 3), torch.zeros(8)], 8),
    (({"a": torch.zeros(4, 3), "b": torch.zeros(4, 5)}, torch.zeros(4)), 4),
    (([torch.zeros(6, 2), torch.zeros(6, 2)], torch.zeros(6)), 6),
    ((torch.tensor(3), torch.zeros(5, 2)), 5),
    ({"name": "x", "x": torch.zeros(2, 1)}, 2),
    ((["a text", "another", "third"], torch.zeros(3)), 3),
    (torch.tensor(1.0), 0),
    (None, 0),
])
def test_the_batch_size_is_the_first_dimension_of_the_first_tensor(batch: object, expected: int) -> None:
    assert batch_size(batch) == expected


def test_a_hugging_face_batch_encoding_counts_its_samples() -> None:
    transformers = pytest.importorskip("transformers")
    encoding = transformers.BatchEncoding({"input_ids": torch.zeros(5, 7, dtype=torch.long), "labels": torch.zeros(5)})
    assert batch_size(encoding) == 5
