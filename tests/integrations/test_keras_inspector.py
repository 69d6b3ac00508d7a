"""KerasInspector on real TensorFlow-backed Keras 3 models: counts, sparsity, quantization, FLOPs."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mlflow_green.integrations.keras_inspector import PRUNED_SPARSITY_THRESHOLD, KerasInspector  # noqa: E402
from mlflow_green.training.inspection import LazyInspector, ModelProfile  # noqa: E402

L = keras.layers
INSPECTOR = KerasInspector()


def _inspect(model: keras.Layer, **context: object) -> ModelProfile:
    return INSPECTOR.inspect(model, **context)


def _mlp(hidden: int = 32) -> keras.Model:
    return keras.Sequential([keras.Input((64,)), L.Dense(hidden, activation="relu"), L.Dense(10)])


def _zero_smallest(kernel: np.ndarray, share: float) -> np.ndarray:
    """Magnitude pruning: zero the ``share`` of ``kernel`` with the smallest absolute values."""
    flat = kernel.copy().ravel()
    flat[np.argsort(np.abs(flat))[: int(round(share * flat.size))]] = 0.0
    return flat.reshape(kernel.shape)


def _wide() -> keras.Model:
    return keras.Sequential([keras.Input((64,)), L.Dense(256), L.Dense(10)])


def _quantized(mode: str) -> keras.Model:
    model = _wide()
    with warnings.catch_warnings():  # "InputLayer does not have a `quantize` method"
        warnings.simplefilter("ignore", UserWarning)
        model.quantize(mode)
    return model


@pytest.fixture()
def mixed_float16() -> Iterator[None]:
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


# --- parameters ------------------------------------------------------------------------------


def test_dense_stack_counts_equal_hand_counts_with_batchnorm_statistics() -> None:
    model = keras.Sequential([keras.Input((64,)), L.Dense(32), L.BatchNormalization(), L.Dense(10)])
    profile = _inspect(model)
    dense1, bn_trainable, bn_moving, dense2 = 64 * 32 + 32, 2 * 32, 2 * 32, 32 * 10 + 10
    assert profile.framework == "keras"
    assert profile.params == profile.params_unique == dense1 + bn_trainable + bn_moving + dense2 == 2538
    assert profile.params_unique == model.count_params()
    assert profile.params_trainable == dense1 + bn_trainable + dense2 == 2474
    assert not profile.shared_weights
    assert profile.size_bytes == 2538 * 4
    assert profile.weight_bits == 32.0
    assert profile.precision == "float32"
    assert profile.quantization is None
    assert profile.compression_tag() == "none"


def test_shared_dense_applied_to_two_inputs_counts_twice_in_params_once_in_unique() -> None:
    a, b = keras.Input((8,)), keras.Input((8,))
    shared = L.Dense(4)
    model = keras.Model([a, b], L.Concatenate()([shared(a), shared(b)]))
    profile = _inspect(model)
    assert profile.params_unique == 8 * 4 + 4 == 36
    assert profile.params == 2 * 36
    assert profile.shared_weights
    assert "shared" in profile.compression_tag()
    assert profile.flops_per_sample == 2 * 4 * (2 * 8 + 1)  # two calls of 4 units x (8 multiply-adds + bias)


def test_layer_reused_in_a_sequential_and_a_nested_model_called_twice_count_per_use() -> None:
    square = L.Dense(8)
    repeated = keras.Sequential([keras.Input((8,)), square, square])
    assert _inspect(repeated).params == 2 * (8 * 8 + 8)
    inner = keras.Sequential([keras.Input((3,)), L.Dense(3)])
    x = keras.Input((3,))
    nested = _inspect(keras.Model(x, inner(inner(x))))
    assert (nested.params, nested.params_unique) == (2 * 12, 12)
    assert nested.flops_per_sample == 2 * 3 * (2 * 3 + 1)


class TiedTranspose(L.Layer):
    """Output projection that reuses an encoder Dense kernel, transposed (tied weights)."""

    def __init__(self, encoder: keras.layers.Dense, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.encoder = encoder

    def build(self, input_shape: tuple[int, ...]) -> None:
        self.tied_kernel = self.encoder.kernel  # the same variable object, tracked by this layer too

    def call(self, x: object) -> object:
        return keras.ops.matmul(x, keras.ops.transpose(self.tied_kernel))


def test_tied_weights_held_by_two_layers_count_per_use() -> None:
    encoder = L.Dense(4, use_bias=False)
    x = keras.Input((6,))
    profile = _inspect(keras.Model(x, TiedTranspose(encoder)(encoder(x))))
    assert (profile.params, profile.params_unique) == (2 * 6 * 4, 6 * 4)
    assert profile.shared_weights
    assert profile.flops_per_sample == 2 * 6 * 4  # the encoder only: the custom matmul is not counted
    assert any("TiedTranspose" in note for note in profile.notes)


# --- sparsity ----------------------------------------------------------------------------------


def test_half_zeroed_kernels_report_sparsity_pruned_and_smaller_compressed_size() -> None:
    model = _mlp(hidden=64)
    profile_before = _inspect(model)
    assert not profile_before.pruned and profile_before.sparsity < 0.01
    for layer in model.layers:
        kernel, bias = layer.get_weights()
        layer.set_weights([_zero_smallest(kernel, 0.5), bias])
    profile = _inspect(model)
    assert profile.sparsity == pytest.approx(0.50, abs=0.01)
    assert profile.pruned and PRUNED_SPARSITY_THRESHOLD == 0.10
    assert "pruned" in profile.compression_tag()
    assert profile.params_nonzero < profile_before.params_nonzero
    assert profile.size_bytes == profile_before.size_bytes
    assert profile.compressed_size_bytes < profile.size_bytes
    assert profile.structured_sparsity == 0.0  # scattered zeros: no whole unit removed


def test_zeroed_dense_columns_give_structured_sparsity() -> None:
    model = keras.Sequential([keras.Input((64,)), L.Dense(16)])
    kernel, bias = model.layers[0].get_weights()
    kernel[:, :4] = 0.0  # 4 of 16 output units
    model.layers[0].set_weights([kernel, bias])
    profile = _inspect(model)
    assert profile.structured_sparsity == pytest.approx(4 / 16)
    assert profile.sparsity == pytest.approx(0.25)


def test_a_model_larger_than_one_read_is_read_in_runs_with_the_same_figures() -> None:
    """Variables are read a run of at most 64 MiB at a time (a large model is never copied whole into
    host memory): a 72 MiB embedding between small layers reads alone, the counts stay exact."""
    from mlflow_green.integrations._keras_weights import READ_CHUNK_BYTES

    model = keras.Sequential([keras.Input((8,), dtype="int32"), L.Embedding(18_432, 1024), L.Dense(16), L.Dense(4)])
    embedding, dense, _ = model.layers
    assert embedding.embeddings.numpy().nbytes > READ_CHUNK_BYTES
    for layer in model.layers:  # no zero by chance among 19 M random values, nor in a bias
        layer.set_weights([np.ones_like(w) for w in layer.get_weights()])
    table = embedding.get_weights()[0]
    table[:4608] = 0.0  # a quarter of the rows
    embedding.set_weights([table])
    kernel, bias = dense.get_weights()
    kernel[:, :4] = 0.0  # 4 of 16 units
    dense.set_weights([kernel, bias])
    profile = _inspect(model)
    params = 18_432 * 1024 + (1024 * 16 + 16) + (16 * 4 + 4)
    zeros = 4608 * 1024 + 1024 * 4
    assert profile.params == params
    assert profile.params_nonzero == params - zeros
    assert profile.sparsity == pytest.approx(zeros / (18_432 * 1024 + 1024 * 16 + 16 * 4), rel=1e-6)


def test_zeroed_conv_filters_and_depthwise_channels_give_structured_sparsity() -> None:
    x = keras.Input((8, 8, 4))
    conv, depthwise = L.Conv2D(8, 3), L.DepthwiseConv2D(3)
    model = keras.Model(x, L.GlobalAveragePooling2D()(depthwise(conv(x))))
    kernel, bias = conv.get_weights()
    kernel[..., :2] = 0.0  # 2 of 8 filters
    conv.set_weights([kernel, bias])
    dw_kernel, dw_bias = depthwise.get_weights()  # (3, 3, 8 channels, 1)
    dw_kernel[:, :, 5, :] = 0.0  # 1 of 8 depthwise channels
    depthwise.set_weights([dw_kernel, dw_bias])
    assert _inspect(model).structured_sparsity == pytest.approx((2 + 1) / (8 + 8))


# --- quantization and precision -----------------------------------------------------------


def test_int8_quantized_model_reports_int8_8_bit_kernels_and_a_smaller_size() -> None:
    before = _inspect(_wide())
    model = _quantized("int8")
    profile = _inspect(model)
    assert profile.quantization == "int8"
    assert "int8" in profile.compression_tag()
    kernels = [w for w in INSPECTOR.weights(model) if w.role == "prunable"]
    assert [(w.dtype, w.bits) for w in kernels] == [("int8", 8.0), ("int8", 8.0)]
    kernel_values, biases = 64 * 256 + 256 * 10, 256 + 10
    assert profile.weight_bits == pytest.approx((8 * kernel_values + 32 * biases) / (kernel_values + biases))
    assert profile.params_unique == before.params_unique  # scales are metadata, not parameters
    assert profile.size_bytes < before.size_bytes / 3
    assert profile.flops_per_sample == before.flops_per_sample
    assert any("scale" in note for note in profile.notes)


def test_int4_quantized_kernels_count_4_bits_and_unpacked_params() -> None:
    before = _inspect(_wide())
    int8_size = _inspect(_quantized("int8")).size_bytes
    model = _quantized("int4")
    profile = _inspect(model)
    assert profile.quantization == "int4"
    kernels = [w for w in INSPECTOR.weights(model) if w.role == "prunable"]
    assert [(w.bits, w.count) for w in kernels] == [(4.0, 64 * 256), (4.0, 256 * 10)]
    assert profile.params_unique == before.params_unique
    assert profile.size_bytes < int8_size
    assert not profile.pruned  # zero-point quantization: a zero code is not a zero weight


def test_float8_keeps_float32_weights() -> None:
    profile = _inspect(_quantized("float8"))
    assert profile.quantization == "float8"
    assert profile.weight_bits == 32.0
    assert profile.params_unique == 64 * 256 + 256 + 256 * 10 + 10


def test_mixed_precision_policy_is_reported(mixed_float16: None) -> None:
    profile = _inspect(_mlp())
    assert profile.precision == "mixed_float16"
    assert profile.weight_bits == 32.0  # mixed precision keeps float32 variables
    assert profile.compression_tag() == "mixed_float16"


def test_bfloat16_layers_report_16_bit_weights() -> None:
    profile = _inspect(keras.Sequential([keras.Input((4,)), L.Dense(3, dtype="bfloat16")]))
    assert (profile.precision, profile.weight_bits, profile.size_bytes) == ("bfloat16", 16.0, 15 * 2)


def test_precision_from_context_wins() -> None:
    assert _inspect(_mlp(), precision="16-mixed").precision == "16-mixed"


# --- FLOPs ---------------------------------------------------------------------------------------


def test_cnn_flops_equal_a_hand_count() -> None:
    x = keras.Input((16, 16, 3))
    y = L.Conv2D(8, 3, padding="same")(x)  # 16x16 out
    y = L.DepthwiseConv2D(3, depth_multiplier=2)(y)  # 14x14 out, 16 channels
    y = L.SeparableConv2D(4, 3)(y)  # 12x12 out
    y = L.BatchNormalization()(y)
    y = L.MaxPooling2D()(y)  # 6x6x4
    y = L.Dense(10)(L.Flatten()(y))
    conv = 16 * 16 * 8 * (2 * 3 * 3 * 3 + 1)  # positions x filters x (k*k*c_in MACs + bias)
    depthwise = 14 * 14 * 8 * 2 * (2 * 3 * 3 + 1)  # positions x channels x multiplier x (k*k MACs + bias)
    separable = 12 * 12 * (16 * 2 * 3 * 3 + 2 * 16 * 4 + 4)  # depthwise + pointwise + bias
    dense = 10 * (2 * 6 * 6 * 4 + 1)
    assert _inspect(keras.Model(x, y)).flops_per_sample == conv + depthwise + separable + dense


def test_dense_on_a_sequence_counts_every_position_and_conv_transpose() -> None:
    x = keras.Input((5, 8))
    profile = _inspect(keras.Model(x, L.Dense(3)(x)))
    assert profile.flops_per_sample == 5 * 3 * (2 * 8 + 1)
    image = keras.Input((8, 8, 3))
    transpose = _inspect(keras.Model(image, L.Conv2DTranspose(4, 3, strides=2, padding="same")(image)))
    assert transpose.flops_per_sample == 2 * 3 * 3 * 3 * 4 * (8 * 8) + 4 * (16 * 16)  # scatter MACs + bias


def test_multi_head_attention_flops_equal_the_hand_formula() -> None:
    t_q, t_kv, d, heads, key_dim = 6, 4, 16, 2, 8
    query, context = keras.Input((t_q, d)), keras.Input((t_kv, d))
    model = keras.Model([query, context], L.MultiHeadAttention(heads, key_dim)(query, context))
    q_proj = t_q * heads * key_dim * (2 * d + 1)
    k_proj = v_proj = t_kv * heads * key_dim * (2 * d + 1)
    out_proj = t_q * d * (2 * heads * key_dim + 1)
    scores = 2 * heads * t_q * t_kv * key_dim  # QK^T
    mix = 2 * heads * t_q * t_kv * key_dim  # attention x V (value_dim = key_dim)
    assert _inspect(model).flops_per_sample == q_proj + k_proj + v_proj + out_proj + scores + mix


def test_embedding_and_einsum_dense_with_unknown_graph_shape_are_traced() -> None:
    tokens = keras.Input((7,), dtype="int32")
    y = L.Embedding(50, 8)(tokens)  # a lookup: 0 FLOPs
    y = L.EinsumDense("abc,cd->abd", output_shape=(None, 6), bias_axes="d")(y)  # graph says (None, None, 6)
    profile = _inspect(keras.Model(tokens, y))
    assert profile.flops_per_sample == 7 * 6 * (2 * 8 + 1)
    assert profile.params == 50 * 8 + 8 * 6 + 6


def test_sequential_with_unknown_graph_shape_is_traced_on_its_own_input() -> None:
    # a Sequential never called: its .input raises, so the second trace reads its graph's input
    model = keras.Sequential([
        keras.Input((7,), dtype="int32"), L.Embedding(50, 8),
        L.EinsumDense("abc,cd->abd", output_shape=(None, 6), bias_axes="d"), L.Dense(2),
    ])
    profile = _inspect(model)
    assert profile.flops_per_sample == 7 * 6 * (2 * 8 + 1) + 7 * 2 * (2 * 6 + 1)
    assert profile.params == 50 * 8 + 8 * 6 + 6 + 6 * 2 + 2


def test_dynamic_shapes_need_an_example_input_for_flops() -> None:
    x = keras.Input((None, 3))
    model = keras.Model(x, L.Conv1D(4, 3)(x))
    profile = _inspect(model)
    assert profile.flops_per_sample is None
    assert any("example_input" in note for note in profile.notes)
    assert profile.params == 3 * 3 * 4 + 4
    traced = _inspect(model, example_input=np.zeros((2, 10, 3), dtype="float32"))
    assert traced.flops_per_sample == 8 * 4 * (2 * 3 * 3 + 1)  # 8 output positions of 4 filters


class Block(L.Layer):
    """A custom composite layer that applies its first Dense twice."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.first, self.second = L.Dense(8), L.Dense(4)

    def call(self, x: object) -> object:
        return self.second(self.first(self.first(x)))


def test_custom_composite_layer_in_a_graph_is_traced_per_call() -> None:
    x = keras.Input((8,))
    profile = _inspect(keras.Model(x, Block()(x)))
    first, second = 8 * 8 + 8, 8 * 4 + 4
    assert (profile.params, profile.params_unique) == (2 * first + second, first + second)
    assert profile.flops_per_sample == 2 * 8 * (2 * 8 + 1) + 4 * (2 * 8 + 1)


T, WIDTH, UNITS = 5, 3, 4  # time steps, input width, recurrent units


@pytest.mark.parametrize(("layer", "gates", "biases"), [
    (lambda: L.SimpleRNN(UNITS), 1, 1),
    (lambda: L.LSTM(UNITS), 4, 1),
    (lambda: L.GRU(UNITS), 3, 2),  # reset_after (Keras's default): an input and a recurrent bias
    (lambda: L.GRU(UNITS, reset_after=False), 3, 1),
], ids=["SimpleRNN", "LSTM", "GRU", "GRU-reset_before"])
def test_recurrent_layers_count_every_time_steps_gate_products(layer: object, gates: int, biases: int) -> None:
    """An LSTM counted 0 FLOPs (the model's figure was the final Dense alone: flop_per_j 240x low)."""
    x = keras.Input((T, WIDTH))
    profile = _inspect(keras.Model(x, L.Dense(2)(layer()(x))))
    step = gates * UNITS * (2 * (WIDTH + UNITS) + biases)  # kernel and recurrent products, bias adds, per gate
    assert profile.flops_per_sample == T * step + 2 * (2 * UNITS + 1)
    assert not any("FLOPs not counted" in note for note in profile.notes)


def test_bidirectional_counts_both_directions_and_time_distributed_every_step() -> None:
    x = keras.Input((T, WIDTH))
    lstm = T * 4 * UNITS * (2 * (WIDTH + UNITS) + 1)
    bidirectional = _inspect(keras.Model(x, L.Dense(2)(L.Bidirectional(L.LSTM(UNITS))(x))))
    assert bidirectional.flops_per_sample == 2 * lstm + 2 * (2 * 2 * UNITS + 1)
    distributed = _inspect(keras.Model(x, L.Dense(2)(L.Flatten()(L.TimeDistributed(L.Dense(UNITS))(x)))))
    assert distributed.flops_per_sample == T * UNITS * (2 * WIDTH + 1) + 2 * (2 * T * UNITS + 1)


class OwnCell(L.Layer):
    """A recurrent cell of the user's own: its FLOPs are not known."""

    def __init__(self, units: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.units = self.state_size = units

    def build(self, input_shape: tuple) -> None:
        self.w = self.add_weight(shape=(input_shape[-1], self.units))

    def call(self, x: object, states: object) -> tuple:
        out = keras.ops.matmul(x, self.w)
        return out, [out]


def test_layers_whose_flops_are_not_known_are_skipped_noted_and_warned(caplog: pytest.LogCaptureFixture) -> None:
    x = keras.Input((T, WIDTH))
    model = keras.Model(x, L.Dense(2)(L.RNN(OwnCell(UNITS))(x)))
    with caplog.at_level("WARNING", logger="mlflow_green"):
        profile = _inspect(model)
        _inspect(model)  # again (a fit profiles its model as it starts and as it ends): said once
    assert profile.params == WIDTH * UNITS + UNITS * 2 + 2
    assert profile.flops_per_sample == 2 * (2 * UNITS + 1)
    assert any("RNN(OwnCell)" in note for note in profile.notes)
    assert len([r for r in caplog.records if "not counted for the layer types RNN(OwnCell)" in r.getMessage()]) == 1


# --- subclassed models and other objects -------------------------------------------------------


class TwoLayer(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = L.Dense(16, activation="relu")
        self.out = L.Dense(10)

    def call(self, x: object) -> object:
        return self.out(self.hidden(x))


def test_unbuilt_subclassed_model_does_not_raise() -> None:
    profile = _inspect(TwoLayer())
    assert profile.params == 0 and profile.flops_per_sample is None
    assert any("not built" in note for note in profile.notes)


def test_subclassed_model_is_traced_on_example_input(digits: tuple[np.ndarray, ...]) -> None:
    x_train = digits[0]
    hand = 16 * (2 * 64 + 1) + 10 * (2 * 16 + 1)
    profile = _inspect(TwoLayer(), example_input=x_train[:8])
    assert (profile.params, profile.flops_per_sample) == (64 * 16 + 16 + 16 * 10 + 10, hand)
    built = TwoLayer()
    built(x_train[:2])
    assert _inspect(built).flops_per_sample == hand  # from the shape it was built with
    assert built.hidden.call.__func__ is L.Dense.call  # the trace left no wrapper behind


def test_supports_keras_objects_only() -> None:
    assert INSPECTOR.supports(_mlp()) and INSPECTOR.supports(L.Dense(3)) and INSPECTOR.supports(TwoLayer())
    for other in (3, "model", np.zeros(3), object(), None):
        assert not INSPECTOR.supports(other)


def test_lazy_builtin_registration_loads_this_inspector() -> None:
    lazy = LazyInspector("keras", "mlflow_green.integrations.keras_inspector", "KerasInspector", ("keras",))
    assert lazy.supports(_mlp()) and not lazy.supports(object())
    assert lazy.inspect(_mlp()).params == 64 * 32 + 32 + 32 * 10 + 10


def test_a_model_built_under_mirrored_strategy_reports_what_the_same_model_reports_without_it(tmp_path: Path) -> None:
    """Under ``tf.distribute`` a model's variables are mirrored on every replica: the inspector reads
    each once and the figures (parameters, zeros, structured sparsity, size) are the model's."""
    pytest.importorskip("tensorflow")
    script = Path(__file__).with_name("keras_mirrored_case.py")
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["replicas"] == 2
    plain, mirrored = result["plain"], result["mirrored"]
    assert mirrored == plain
    metrics = mirrored["metrics"]
    assert metrics["green/model_params"] == 8 * 16 + 16 + 16 * 3 + 3
    # zeros: 2 of the 8 kernel rows (32 weights) and the 19 zero-initialised biases
    assert metrics["green/model_params_nonzero"] == 195 - 32 - 19
    assert metrics["green/model_size_bytes"] == 195 * 4


# --- keras.applications: the figures docs/schema.md quotes, and an independent count --------------
def _hand_count(model: keras.Model) -> int:
    """Forward FLOPs from each layer's configuration and output shape alone (2 per multiply-add, 1 per bias add)."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, L.DepthwiseConv2D):  # before Conv2D: a subclass of it in some Keras versions
            _, h, w, c = layer.output.shape
            macs = h * w * c * layer.kernel_size[0] * layer.kernel_size[1]  # one input channel per output channel
        elif isinstance(layer, L.Conv2D):
            _, h, w, c = layer.output.shape
            macs = h * w * c * layer.kernel_size[0] * layer.kernel_size[1] * layer.input.shape[-1] // layer.groups
        elif isinstance(layer, L.Dense):
            h = w = 1
            c = layer.units
            macs = layer.input.shape[-1] * layer.units
        else:
            continue
        flops += 2 * macs + (h * w * c if layer.use_bias else 0)
    return flops


@pytest.mark.parametrize(("name", "documented_flops", "params"), [
    ("MobileNetV2", 601.5e6, 3_538_984),  # 300 M multiply-adds published (Sandler et al. 2018)
    ("ResNet50", 7.73e9, 25_636_712),  # 3.8 G multiply-adds published (He et al. 2016)
    ("EfficientNetB0", 771.6e6, 5_330_571),  # 0.39 G multiply-adds published (Tan & Le 2019)
])
def test_keras_applications_at_224_match_the_documented_figures_and_a_count_from_the_layers(
        name: str, documented_flops: float, params: int) -> None:
    """docs/schema.md's table: random weights (nothing downloaded), the 224×224 models of the papers."""
    model = getattr(keras.applications, name)(weights=None, input_shape=(224, 224, 3))
    profile = _inspect(model)
    assert profile.params == params == model.count_params()
    assert profile.flops_per_sample == _hand_count(model)
    assert profile.flops_per_sample == pytest.approx(documented_flops, rel=1e-3)
