"""measure_inference without MLflow: windows, warm-up, figures, model kinds, data kinds, bad input, faults."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import pytest

import mlflow_green
from mlflow_green.errors import ConfigError, InferenceError
from mlflow_green.inference import measure_inference
from mlflow_green.testing import FakeMeter

FAST = {"warmup_s": 0.0, "min_duration_s": 0.05}


def fake(cpu_w: float = 30.0, ram_w: float = 6.0) -> FakeMeter:
    return FakeMeter({"cpu:0": cpu_w, "ram:0": ram_w})


class SlowCounter(FakeMeter):
    """A counter that updates every 40 ms (as NVML's can): windows must span ten updates."""

    def update_periods_s(self) -> dict[str, float]:
        return {"cpu:0": 0.04}


class LearntCounter(FakeMeter):
    """A counter whose 50 ms period is learnt only after 0.1 s (as NVML learns its counters')."""

    def __init__(self) -> None:
        super().__init__({"cpu:0": 10.0, "ram:0": 1.0}, name="learnt")
        self.opened_at = time.monotonic()

    def update_periods_s(self) -> dict[str, float]:
        return {"cpu:0": 0.05} if time.monotonic() - self.opened_at > 0.1 else {}


def matmul_model(rows: int = 64) -> tuple[np.ndarray, object]:
    weights = np.random.default_rng(0).random((64, 10), dtype=np.float32)
    return np.random.default_rng(1).random((rows, 64), dtype=np.float32), (lambda batch: batch @ weights)


def test_public_name_and_one_frozen_result_per_batch_size() -> None:
    data, model = matmul_model()
    report = mlflow_green.measure_inference(model, data, batch_sizes=(1, 8, 32), meters=[fake()], **FAST)
    assert [r.batch_size for r in report] == [1, 8, 32]
    assert report.headline is report[32]
    for result in report:
        assert result.predictions == result.batches * result.batch_size > 0
        assert result.duration_s >= 0.05
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.batch_size = 2  # type: ignore[misc]
    with pytest.raises(KeyError, match="measured: \\[1, 8, 32\\]"):
        report[64]


def test_energy_per_prediction_is_window_energy_over_rows_with_provenance_and_scope() -> None:
    data, model = matmul_model()
    report = measure_inference(model, data, batch_sizes=(4,), meters=[fake(30.0, 6.0)], warmup_s=0, min_duration_s=0.2)
    result = report[4]
    assert result.power_w == pytest.approx(36.0, rel=1e-6)  # constant fake draw
    # the window is the counters' window: energy / rows, and power / throughput agree within the reads' overhead
    assert result.energy_per_prediction_j == pytest.approx(result.energy_j / result.predictions)
    assert result.energy_per_prediction_j == pytest.approx(result.power_w / result.throughput_per_s, rel=0.05)
    assert result.provenance == "counter" and not result.estimated
    assert result.scope == "cpu:machine,ram:machine"
    assert report.meters == "cpu:fake,ram:fake"
    assert {d["device_id"] for d in result.to_dict()["measurement"]["devices"]} == {"cpu:0", "ram:0"}


def test_latency_percentiles_are_per_call_and_ordered() -> None:
    def model(batch: list[int]) -> list[int]:
        time.sleep(0.002)
        return batch

    result = measure_inference(model, list(range(50)), batch_sizes=(5,), meters=[fake()], warmup_s=0,
                               min_duration_s=0.1)[5]
    assert 2.0 <= result.latency_p50_ms <= result.latency_p95_ms < 50.0
    assert result.throughput_per_s == pytest.approx(result.predictions / result.duration_s)


def test_warm_up_is_excluded_from_the_window() -> None:
    calls = []

    def model(batch: np.ndarray) -> np.ndarray:
        calls.append(time.perf_counter())
        if len(calls) <= 3:  # the first calls compile: slow
            time.sleep(0.05)
        return batch

    data = np.zeros((16, 4))
    result = measure_inference(model, data, batch_sizes=(4,), meters=[fake()], warmup_s=0.2, min_duration_s=0.05)[4]
    assert result.latency_p95_ms < 20.0  # none of the 50 ms calls is in the window
    assert len(calls) > result.batches  # the warm-up calls happened, outside the window


def test_window_spans_ten_counter_update_periods() -> None:
    data, model = matmul_model()
    meter = SlowCounter({"cpu:0": 10.0, "ram:0": 1.0}, name="slow")
    report = measure_inference(model, data, batch_sizes=(1,), meters=[meter], warmup_s=0, min_duration_s=0.01)
    assert report.update_period_s == pytest.approx(0.04)
    assert report[1].window_s == pytest.approx(0.4)
    assert report[1].duration_s >= 0.4


def test_a_period_learnt_during_the_window_lengthens_it() -> None:
    data, model = matmul_model()
    report = measure_inference(model, data, batch_sizes=(1,), meters=[LearntCounter()], warmup_s=0, min_duration_s=0.15)
    assert report.update_period_s == pytest.approx(0.05)
    assert report[1].window_s == pytest.approx(0.5) and report[1].duration_s >= 0.5


def test_a_sampled_component_counts_its_sampling_interval() -> None:
    data, model = matmul_model()
    meter = FakeMeter({"cpu:0": 10.0, "ram:0": 1.0}, provenance="sampled", name="sampler")
    report = measure_inference(model, data, batch_sizes=(1,), meters=[meter], warmup_s=0, min_duration_s=0.01,
                               sample_interval_s=0.03)
    assert report.update_period_s == pytest.approx(0.03) and report[1].duration_s >= 0.3


def test_a_window_has_at_least_two_calls_even_for_a_slow_model() -> None:
    def model(batch: np.ndarray) -> np.ndarray:
        time.sleep(0.06)
        return batch

    result = measure_inference(model, np.zeros((4, 2)), batch_sizes=(2,), meters=[fake()], warmup_s=0,
                               min_duration_s=0.01)[2]
    assert result.batches == 2


def test_batches_wrap_around_when_larger_than_the_data() -> None:
    seen: list[int] = []

    def model(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        return batch

    report = measure_inference(model, np.arange(5).reshape(5, 1), batch_sizes=(8,), meters=[fake()], **FAST)
    assert set(seen) == {8}
    assert report.rows == 5 and report[8].predictions == 8 * report[8].batches


@pytest.mark.parametrize(
    "data",
    [
        pd.DataFrame({"a": range(20), "b": range(20)}),
        {"image": np.zeros((20, 3)), "mask": np.ones((20, 1))},
        [[0.0, 1.0]] * 20,
        pd.Series(range(20)),
    ],
    ids=["dataframe", "dict", "list", "series"],
)
def test_data_kinds(data: object) -> None:
    sizes: list[int] = []

    def model(batch: object) -> object:
        sizes.append(len(batch["image"]) if isinstance(batch, dict) else len(batch))  # type: ignore[arg-type]
        return batch

    report = measure_inference(model, data, batch_sizes=(3,), meters=[fake()], **FAST)
    assert report.rows == 20 and set(sizes) == {3}


def test_an_object_with_predict_is_called_through_predict() -> None:
    from sklearn.linear_model import LinearRegression

    x = np.random.default_rng(0).random((40, 3))
    estimator = LinearRegression().fit(x, x.sum(axis=1))
    report = measure_inference(estimator, x, batch_sizes=(10,), meters=[fake()], **FAST)
    assert report.model == "LinearRegression.predict"


def test_torch_module_in_eval_and_inference_mode_restored_after() -> None:
    torch = pytest.importorskip("torch")
    seen = {}

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen["training"] = self.training
            seen["grad"] = torch.is_grad_enabled()
            seen["dtype"] = x.dtype
            return self.linear(x)

    net = Net().train()
    data = np.random.default_rng(0).random((32, 64))  # float64: converted to the weights' float32
    report = measure_inference(net, data, batch_sizes=(1, 16), meters=[fake()], **FAST)
    assert seen == {"training": False, "grad": False, "dtype": torch.float32}
    assert net.training  # restored
    assert report.model == "torch module Net on cpu"


def test_keras_model_through_predict_on_batch() -> None:
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)], name="tiny")
    report = measure_inference(model, np.zeros((16, 8), dtype="float32"), batch_sizes=(1, 8), meters=[fake()],
                               warmup_s=0.05, min_duration_s=0.05)
    assert report.model == "Keras model 'tiny'"
    assert report[8].predictions > 0


# --- bad input: clear errors before any call -----------------------------------------------------


def never_called(batch: object) -> object:
    raise AssertionError("the model must not be called")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_sizes": (0,)}, "positive integers"),
        ({"batch_sizes": (-4, 1)}, "positive integers"),
        ({"batch_sizes": (2.5,)}, "positive integers"),
        ({"batch_sizes": (True,)}, "positive integers"),
        ({"batch_sizes": ()}, "non-empty"),
        ({"batch_sizes": "32"}, "non-empty"),
        ({"batch_sizes": (8, 8)}, "lists 8 twice"),
        ({"warmup_s": -1}, "warmup_s"),
        ({"warmup_s": float("nan")}, "warmup_s"),
        ({"min_duration_s": 0}, "min_duration_s"),
        ({"min_duration_s": "2"}, "min_duration_s"),
        ({"region": "Atlantis"}, "Atlantis"),
        ({"pue": 0.5}, "PUE"),
    ],
)
def test_bad_settings_fail_before_the_model_is_called(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        measure_inference(never_called, np.zeros((4, 2)), **kwargs)


@pytest.mark.parametrize("data", [np.zeros((0, 8)), [], pd.DataFrame({"a": []}), {}], ids=["array", "list", "frame", "dict"])
def test_empty_data_fails_before_the_model_is_called(data: object) -> None:
    with pytest.raises(ConfigError, match="data is empty"):
        measure_inference(never_called, data)


@pytest.mark.parametrize("data", [np.float32(1.0), "abc", 3], ids=["scalar", "string", "int"])
def test_data_without_rows_is_a_clear_error(data: object) -> None:
    with pytest.raises(ConfigError, match="rows"):
        measure_inference(never_called, data)


def test_something_not_callable_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="needs a model to call"):
        measure_inference(object(), np.zeros((4, 2)))


@pytest.mark.parametrize("fail_on_call", [1, 5])
def test_a_model_that_raises_fails_loudly_and_the_meters_are_closed(fail_on_call: int) -> None:
    calls = []

    def model(batch: np.ndarray) -> np.ndarray:
        calls.append(1)
        if len(calls) == fail_on_call:
            raise ValueError("shape mismatch: expected 64 features")
        return batch

    meter = fake()
    with pytest.raises(InferenceError, match="raised ValueError .* batch size 2: shape mismatch") as info:
        measure_inference(model, np.zeros((8, 2)), batch_sizes=(2,), meters=[meter], warmup_s=0.05, min_duration_s=0.5)
    assert isinstance(info.value.__cause__, ValueError)
    assert meter.closed


def test_past_the_latency_samples_the_window_keeps_counting() -> None:
    from mlflow_green import EnergyTracker
    from mlflow_green.inference.measure import _window

    tracker = EnergyTracker(meters=[fake()])
    tracker.start()
    try:
        result = _window(tracker, lambda batch: batch, [[1], [2], [3]], 1, 0.05, max_samples=10)
    finally:
        tracker.stop()
    assert result.batches > 10  # counted past the samples kept for the percentiles
    assert result.predictions == result.batches and result.latency_p95_ms >= result.latency_p50_ms >= 0
    assert result.throughput_per_s == pytest.approx(result.batches / result.duration_s)
