"""TotalFlopMode counts what torch's FlopCounterMode counts, over every kind of layer the inspector meets."""

from __future__ import annotations

from collections.abc import Callable

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from mlflow_green.integrations._torch_flop_mode import NeedsFullCounter, TotalFlopMode  # noqa: E402
from mlflow_green.integrations._torch_flops import _FLOP_FORMULAS, counted_flops  # noqa: E402


class Attention(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = k = v = x.view(2, 2, 5, 4)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


class Products(nn.Module):
    """matmul, bmm, baddbmm, addmm and einsum (decomposed into bmm)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.w
        z = torch.bmm(y.view(2, 5, 6), y.view(2, 6, 5))
        z = torch.baddbmm(z, z, z)
        a = torch.addmm(torch.ones(6), y, torch.randn(6, 6))
        return torch.einsum("bij,bjk->bik", z, z).sum() + a.sum()


class Cond(nn.Module):
    """torch.cond: a higher-order operator (FlopCounterMode counts its larger branch)."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)  # counted before the cond is reached
        return torch.cond(x.sum() > 0, lambda t: self.a(t), lambda t: self.b(self.b(t)), (x,))


def transformer() -> nn.Module:
    return nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True), 2,
                                 enable_nested_tensor=False)


MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[], torch.Tensor]]] = {
    "linear stack": (lambda: nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)), lambda: torch.randn(3, 8)),
    "conv, batch norm, pooling": (lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                                        nn.MaxPool2d(2), nn.Conv2d(8, 4, 3, groups=4), nn.Flatten()),
                                  lambda: torch.randn(2, 3, 8, 8)),
    "conv transpose and 1-d conv": (lambda: nn.Sequential(nn.ConvTranspose2d(4, 2, 3, stride=2), nn.Flatten(2),
                                                          nn.Conv1d(2, 3, 5, dilation=2)), lambda: torch.randn(2, 4, 5, 5)),
    "transformer encoder": (transformer, lambda: torch.randn(2, 6, 8)),
    "scaled dot-product attention": (Attention, lambda: torch.randn(2, 40)),
    "products": (Products, lambda: torch.randn(10, 8)),
    "embedding and LSTM": (lambda: nn.Sequential(nn.Embedding(20, 8), nn.LSTM(8, 6, batch_first=True)),
                           lambda: torch.randint(0, 20, (2, 7))),
}


def full_count(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_FLOP_FORMULAS) as counter:
        model(x)
    return counter.get_total_flops()


@pytest.fixture
def no_fused_attention() -> object:
    """As the inspector's pass: the fused attention fast path (whose FLOPs neither mode sees) off."""
    mha = torch.backends.mha
    enabled = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    yield
    mha.set_fastpath_enabled(enabled)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.usefixtures("no_fused_attention")
def test_counts_what_flop_counter_mode_counts(name: str) -> None:
    make_model, make_input = MODELS[name]
    torch.manual_seed(0)
    model, x = make_model().eval(), make_input()
    expected = full_count(model, x)
    with torch.no_grad(), TotalFlopMode(_FLOP_FORMULAS) as mode:
        model(x)
    assert mode.get_total_flops() == expected
    if name not in ("embedding and LSTM",):  # the fused LSTM kernel: no operator with a formula
        assert expected > 0


def test_a_higher_order_operator_is_handed_to_flop_counter_mode() -> None:
    model, x = Cond().eval(), torch.ones(2, 8)
    with pytest.raises(NeedsFullCounter), torch.no_grad(), TotalFlopMode():
        model(x)
    calls, flops_per_sample = counted_flops(model, x, [], None)
    # FlopCounterMode's own count (it runs both branches and keeps the larger) and the bias adds of the pass's four
    # Linear calls (2 samples × 8 each), per sample
    assert full_count(model, x) >= 256 + 512
    assert flops_per_sample == (full_count(model, x) + 4 * 16) / 2
    # the first, abandoned pass's calls (the first Linear's) not counted
    assert calls == {id(model): 1, id(model.first): 1, id(model.a): 1, id(model.b): 2}
