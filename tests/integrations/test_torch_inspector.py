"""TorchInspector on real tiny torch models: counts checked against hand arithmetic."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
prune = pytest.importorskip("torch.nn.utils.prune")
tq = pytest.importorskip("torch.ao.quantization")
nn = torch.nn

from mlflow_green.integrations.torch_inspector import TorchInspector  # noqa: E402
from mlflow_green.training.inspectors import inspect_model  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.ao.quantization is deprecated"),
    pytest.mark.filterwarnings("ignore:.*quantize_per_tensor"),
    pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max"),
]

MLP_PARAMS = (10 * 20 + 20) + (20 * 5 + 5)  # 220 + 105 = 325
MLP_FLOPS = 2 * 10 * 20 + 20 + 2 * 20 * 5 + 5  # multiply-adds x2 + bias adds = 525
CNN_PARAMS = (8 * 3 * 3 * 3 + 8) + 2 * 8 + 16 * 8 * 3 * 3 + (16 * 10 + 10)  # 224 + 16 + 1152 + 170 = 1562
# conv1 3->8 k3 on 8x8 -> 6x6: 2*(8*36)*(3*9) + 8*36 bias = 15552 + 288
# conv2 8->16 k3 no bias on 6x6 -> 4x4: 2*(16*16)*(8*9) = 36864; pool, linear 16->10: 2*16*10 + 10
CNN_FLOPS = 15552 + 288 + 36864 + 330



def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))


def cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, bias=False),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip


def inspect(model: nn.Module, **context: object):
    return TorchInspector().inspect(model, **context)


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens))


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.relu(self.lin(x)))


def test_mlp_and_cnn_counts_match_hand_counts() -> None:
    m, c = inspect(mlp()), inspect(cnn())
    assert (m.framework, m.params, m.params_unique, m.params_trainable) == ("torch", MLP_PARAMS, MLP_PARAMS, MLP_PARAMS)
    assert m.size_bytes == m.compressed_size_bytes == MLP_PARAMS * 4
    assert (m.weight_bits, m.quantization, m.precision) == (32.0, None, "float32")
    assert not m.pruned and not m.shared_weights
    assert c.params == c.params_unique == CNN_PARAMS
    # BatchNorm buffers are stored, not parameters: 2 x 8 float32 statistics + int64 counter
    assert c.size_bytes == CNN_PARAMS * 4 + 16 * 4 + 8
    assert m.flops_per_sample is None and any("example_input" in n for n in m.notes)


def test_flops_of_a_linear_and_conv_stack_equal_hand_count() -> None:
    assert inspect(mlp(), example_input=torch.randn(3, 10)).flops_per_sample == MLP_FLOPS
    assert inspect(cnn(), example_input=torch.randn(2, 3, 8, 8)).flops_per_sample == CNN_FLOPS


def test_flops_of_a_transformer_layer_in_eval_mode_include_attention() -> None:
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True).eval()  # eval: the fused fast path
    p = inspect(layer, example_input=torch.randn(2, 5, 16))
    # per token: QKV 2*16*48 + out 2*16*16 + FF 2*16*32 + 2*32*16 = 4096; 5 tokens = 20480
    # QK^T and AV: 2 * 2 * (5*5*16) = 1600; FF bias adds 5 * (32 + 16) = 240 (MHA projection biases not counted)
    assert p.flops_per_sample == 20480 + 1600 + 240
    assert torch.backends.mha.get_fastpath_enabled() and not layer.training


def test_tied_weights_count_per_module_in_params_and_once_unique() -> None:
    for context in ({}, {"example_input": torch.randint(0, 50, (2, 7))}):
        p = inspect(TiedLM(), **context)
        assert (p.params, p.params_unique, p.shared_weights) == (2 * 800, 800, True)
        assert p.compression_tag() == "shared"


def test_module_called_twice_counts_twice_with_example_input() -> None:
    with_input = inspect(Twice(), example_input=torch.randn(2, 4))
    assert (with_input.params, with_input.params_unique, with_input.shared_weights) == (40, 20, True)
    assert with_input.flops_per_sample == 2 * (2 * 4 * 4 + 4)
    without = inspect(Twice())
    assert (without.params, without.shared_weights) == (20, False)
    lin = nn.Linear(4, 4)  # one module registered twice counts per registration
    assert inspect(nn.Sequential(lin, nn.ReLU(), lin)).params == 40


def test_unstructured_pruning_gives_sparsity_and_smaller_compressed_size() -> None:
    model = mlp()
    for layer in (model[0], model[2]):
        prune.l1_unstructured(layer, "weight", amount=0.5)
    p = inspect(model, example_input=torch.randn(2, 10))
    assert p.sparsity == pytest.approx(0.50, abs=0.01)
    assert p.pruned and p.compression_tag() == "pruned"
    assert p.params == p.params_unique == MLP_PARAMS  # weight_orig + weight_mask read as one weight
    assert p.params_nonzero == MLP_PARAMS - 150
    assert p.size_bytes == MLP_PARAMS * 4  # masks are not counted
    assert p.compressed_size_bytes < p.size_bytes
    # 100 / 50 nonzero float32 weights + 1-bit bitmaps, biases dense
    assert p.compressed_size_bytes == math.ceil(100 * 4 + 200 / 8) + math.ceil(50 * 4 + 100 / 8) + 25 * 4
    assert p.flops_per_sample == MLP_FLOPS  # the pruned weight attribute is restored
    assert isinstance(model[0].weight, torch.Tensor) and model[0].weight.requires_grad


def test_pruning_removed_still_reads_as_pruned() -> None:
    model = mlp()
    prune.l1_unstructured(model[0], "weight", amount=0.8)
    prune.remove(model[0], "weight")
    p = inspect(model)
    assert p.pruned and p.sparsity == pytest.approx(160 / 300, abs=0.01)


def test_ln_structured_pruning_on_conv_gives_structured_sparsity() -> None:
    conv = nn.Conv2d(3, 8, 3)
    prune.ln_structured(conv, "weight", amount=0.25, n=2, dim=0)
    p = inspect(conv)
    assert p.structured_sparsity == pytest.approx(0.25, abs=0.01)
    assert p.sparsity == pytest.approx(0.25, abs=0.01) and p.pruned
    assert inspect(nn.Conv2d(3, 8, 3)).structured_sparsity == 0.0


def test_dynamic_int8_quantization() -> None:
    float_model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    q = tq.quantize_dynamic(float_model, {nn.Linear}, dtype=torch.qint8)
    p, f = inspect(q, example_input=torch.randn(2, 64)), inspect(float_model)
    weights, biases = 64 * 64 + 64 * 8, 64 + 8
    assert p.quantization == "int8" and p.compression_tag() == "int8"
    assert p.params == p.params_unique == f.params and p.params_trainable == 0
    assert p.weight_bits == pytest.approx((8 * weights + 32 * biases) / (weights + biases))  # ~8.5
    q_weights = [t for t in TorchInspector().tensors(q) if t.name.endswith("weight")]
    assert [t.bits for t in q_weights] == [8.0, 8.0] and {t.dtype for t in q_weights} == {"qint8"}
    assert p.size_bytes < f.size_bytes / 3
    assert p.flops_per_sample == 2 * 64 * 64 + 64 + 2 * 64 * 8 + 8  # counted by hand for packed Linear


def test_dynamic_float16_quantization() -> None:
    q = tq.quantize_dynamic(nn.Sequential(nn.Linear(32, 32)), {nn.Linear}, dtype=torch.float16)
    p = inspect(q)
    assert p.quantization == "float16"
    assert p.weight_bits == pytest.approx((16 * 1024 + 32 * 32) / 1056)


def test_int4_embedding_reports_four_bits() -> None:
    q = torch.ao.nn.quantized.Embedding(100, 16, dtype=torch.quint4x2)
    p = inspect(q)
    assert (p.quantization, p.weight_bits, p.params) == ("int4", 4.0, 1600)
    assert p.size_bytes == 1600 // 2 + 8 * 100  # packed nibbles + a scale/zero point per row


class QuantCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8 * 6 * 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.fc(self.conv(self.quant(x)).flatten(1)))


def test_static_quantization_counts_flops_by_hand() -> None:
    model = QuantCNN().eval()
    x = torch.randn(2, 3, 8, 8)
    float_flops = inspect(model, example_input=x).flops_per_sample
    model.qconfig = tq.get_default_qconfig("x86")
    prepared = tq.prepare(model)
    prepared(x)
    p = inspect(tq.convert(prepared), example_input=x)
    assert p.quantization == "int8" and p.params == 224 + 288 * 4 + 4
    assert p.flops_per_sample == float_flops == 2 * 8 * 36 * 27 + 8 * 36 + 2 * 288 * 4 + 4


def test_half_and_bfloat16_are_low_precision_not_quantization() -> None:
    half = inspect(mlp().half(), example_input=torch.randn(2, 10))
    assert (half.weight_bits, half.quantization, half.precision) == (16.0, None, "float16")
    assert half.size_bytes == MLP_PARAMS * 2 and half.flops_per_sample == MLP_FLOPS
    bf16 = inspect(mlp().to(torch.bfloat16))
    assert (bf16.weight_bits, bf16.precision, bf16.compression_tag()) == (16.0, "bfloat16", "bfloat16")


def test_precision_context_is_passed_through() -> None:
    p = inspect(mlp(), precision="bf16-mixed")
    assert p.precision == "bf16-mixed" and p.compression_tag() == "bf16-mixed"


def test_lightning_module_uses_example_input_array() -> None:
    lightning = pytest.importorskip("lightning")

    class Lit(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()
            self.example_input_array = torch.randn(4, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    model = Lit()
    assert TorchInspector().supports(model)
    p = inspect(model)
    assert p.params == MLP_PARAMS and p.flops_per_sample == MLP_FLOPS
    assert p.precision == "float32"
    model.trainer = lightning.Trainer(
        precision="bf16-mixed", accelerator="cpu", logger=False, enable_progress_bar=False
    )
    assert inspect(model).precision == "bf16-mixed"  # the attached Trainer's precision


def test_inspect_leaves_modes_grads_and_statistics_unchanged() -> None:
    model = cnn().train()
    model[0].eval()
    model[3].weight.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    stats = model[1].running_mean.clone()
    p = inspect(model, example_input=torch.randn(2, 3, 8, 8))
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == grads
    assert torch.equal(model[1].running_mean, stats)
    assert p.params_trainable == CNN_PARAMS - 16 * 8 * 9


class _Stateful(nn.Module):
    """A forward that draws from torch's and NumPy's generators, and changes buffers in place, by replacement and
    in an inference tensor (which keeps no version count: left as the pass leaves it)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.register_buffer("calls", torch.zeros(()))
        self.register_buffer("last", torch.zeros(4))
        with torch.inference_mode():
            self.register_buffer("frozen", torch.ones(1))

    def forward(self, x: torch.Tensor, fail: bool = False) -> torch.Tensor:
        import numpy as np

        self.calls += 1
        self.last = x[0].detach().clone()
        noise = torch.randn_like(x) + float(np.random.rand())
        if fail:
            raise ValueError("no")
        return self.linear(x + noise)


@pytest.mark.parametrize("fail", [False, True], ids=["returns", "raises"])
def test_inspect_gives_back_the_generators_and_buffers_the_forward_changes(fail: bool) -> None:
    np = pytest.importorskip("numpy")
    model, example = _Stateful(), torch.ones(3, 4)
    buffers = {name: (b, b.clone()) for name, b in model.named_buffers()}
    torch.manual_seed(7)
    np.random.seed(7)
    p = inspect(model, example_input=(example, fail) if fail else example)
    assert (p.flops_per_sample is None) == fail
    assert torch.equal(torch.rand(3), _seeded_rand(7))
    assert np.random.rand() == np.random.RandomState(7).rand()
    for name, (tensor, value) in buffers.items():
        assert model.get_buffer(name) is tensor and torch.equal(tensor, value), name


def _seeded_rand(seed: int) -> torch.Tensor:
    return torch.rand(3, generator=torch.Generator().manual_seed(seed))


def test_failing_forward_leaves_flops_unknown_with_a_note() -> None:
    p = inspect(mlp(), example_input=torch.randn(2, 7))
    assert p.flops_per_sample is None and any("failed" in n for n in p.notes)
    assert p.params == MLP_PARAMS


def test_supports_only_torch_modules() -> None:
    inspector = TorchInspector()
    assert inspector.name == "torch"
    assert inspector.supports(mlp()) and inspector.supports(nn.Linear(1, 1))
    assert not any(inspector.supports(x) for x in (None, [1, 2], torch.zeros(2), "model", object()))


def test_registered_through_the_builtin_plugin() -> None:
    profile = inspect_model(mlp(), example_input=torch.randn(1, 10))
    assert profile is not None and profile.framework == "torch" and profile.flops_per_sample == MLP_FLOPS


class _LastStep(nn.Module):
    """A recurrent layer, then a Linear on its last time step's output."""

    def __init__(self, rnn: nn.RNNBase, out_width: int) -> None:
        super().__init__()
        self.rnn, self.fc = rnn, nn.Linear(out_width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


@pytest.mark.parametrize(("kind", "gates", "layers", "bidirectional"), [
    (nn.RNN, 1, 1, False), (nn.LSTM, 4, 1, False), (nn.GRU, 3, 1, False), (nn.LSTM, 4, 2, True), (nn.GRU, 3, 2, False),
], ids=["RNN", "LSTM", "GRU", "LSTM-2-layers-bidirectional", "GRU-2-layers"])
def test_recurrent_layers_count_every_time_steps_gate_products(kind: type, gates: int, layers: int, bidirectional: bool) -> None:
    """nn.LSTM's fused kernel hid its FLOPs (the model's figure was the final Linear alone); nn.RNN and nn.GRU
    were counted in part. Per time step, layer and direction: the gates' input and recurrent products and
    torch's two bias adds."""
    steps, width, hidden = 10, 8, 16
    directions = 2 if bidirectional else 1
    model = _LastStep(kind(width, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional),
                      directions * hidden)
    profile = inspect_model(model, example_input=torch.zeros(3, steps, width))
    expected, layer_width = 0, width
    for _ in range(layers):
        expected += directions * steps * gates * hidden * (2 * (layer_width + hidden) + 2)
        layer_width = directions * hidden
    expected += 2 * directions * hidden * 4 + 4
    assert profile.flops_per_sample == expected
    assert not any("not counted" in note and "RNN" in note for note in profile.notes)


def test_lazy_modules_not_initialised_yet_are_not_profiled_nor_initialised(caplog: pytest.LogCaptureFixture) -> None:
    from mlflow_green.errors import ModelNotReadyError

    model = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ModelNotReadyError, match="lazy modules"):
        TorchInspector().inspect(model, example_input=torch.ones(2, 3))
    with caplog.at_level("INFO", logger="mlflow_green"):
        assert inspect_model(model, example_input=torch.ones(2, 3)) is None
    assert "lazy modules not initialised yet" in caplog.text and "WARNING" not in caplog.text
    assert isinstance(model[0].weight, nn.parameter.UninitializedParameter)  # left for the training to initialise
    model(torch.ones(2, 3))
    assert inspect(model, example_input=torch.ones(2, 3)).params == 3 * 4 + 4 + 4 * 2 + 2
