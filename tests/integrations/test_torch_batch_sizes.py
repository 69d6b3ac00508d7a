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


def test_a_dataclass_batch_counts_the_samples_of_its_fields() -> None:
    import dataclasses

    @dataclasses.dataclass
    class Batch:  # a batch class of the user's own, which Lightning moves between devices as it does tuples
        ids: list
        x: torch.Tensor
        y: torch.Tensor

    assert batch_size(Batch(["a", "b", "c"], torch.zeros(3, 8), torch.zeros(3))) == 3


def test_a_dict_batch_gives_forward_the_keys_it_names() -> None:
    from mlflow_green.integrations._torch_batches import example_of

    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    class Kw(torch.nn.Module):
        def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
            return inputs["x"]

    batch = {"x": torch.zeros(4, 64), "y": torch.zeros(4)}
    example = example_of(Net().forward, batch)
    assert set(example) == {"x"} and example["x"].shape == (1, 64)  # forward(x=..., y=...) would raise
    assert set(example_of(Kw().forward, batch)) == {"x", "y"}
