"""``measure_inference``: joules per prediction, steady state, for any model; no MLflow needed.

For each batch size, in order:

1. the data is cut into batches of that size, and converted for the model (before any window);
2. **warm-up**: calls for ``warmup_s`` seconds, not measured (graph tracing, compilation, caches);
3. **window**: the tracker's counters are read, then batches are predicted back to back, each
   call timed, until the window lasts ``min_duration_s`` and at least ten update periods of the
   slowest counter (and at least two calls); then the counters are read again.

Energy per prediction is the window's energy (every device the tracker measures, with its
provenance and scope) divided by the rows predicted in it. Model loading, data preparation,
warm-up and the time between windows are excluded.

Example:
    >>> from mlflow_green.testing import FakeMeter
    >>> report = measure_inference(lambda batch: [x + 1 for x in batch], list(range(100)),
    ...                            batch_sizes=(1, 10), warmup_s=0, min_duration_s=0.05,
    ...                            meters=[FakeMeter({"cpu:0": 15.0, "ram:0": 5.0})])
    >>> [r.batch_size for r in report], report.headline.batch_size
    ([1, 10], 10)
    >>> round(report[10].power_w), report[10].provenance
    (20, 'counter')
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from mlflow_green.errors import InferenceError
from mlflow_green.inference.adapters import Predictor, as_predictor
from mlflow_green.inference.batches import make_batches, row_count
from mlflow_green.inference.options import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_MIN_DURATION_S,
    DEFAULT_WARMUP_S,
    MIN_CALLS_PER_WINDOW,
    UPDATE_PERIODS_PER_WINDOW,
    InferenceOptions,
)
from mlflow_green.inference.result import InferenceReport, InferenceResult, percentile
from mlflow_green.measure.tracker import EnergyTracker

logger = logging.getLogger(__name__)

MAX_LATENCY_SAMPLES = 1_000_000
"""Call times kept per window for the percentiles (the first million calls); throughput counts all."""


def measure_inference(
    model_or_predict_fn: Any,
    data: Any,
    *,
    batch_sizes: int | Sequence[int] = DEFAULT_BATCH_SIZES,
    warmup_s: float = DEFAULT_WARMUP_S,
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
    meters: Any = None,
    region: str | None = None,
    pue: float | None = None,
    scope: str | None = None,
    sample_interval_s: float | None = None,
) -> InferenceReport:
    """Measure the energy, latency and throughput of predicting ``data`` at each batch size.

    Args:
        model_or_predict_fn: A Keras model, a torch module (a Lightning module too), an object
            with ``predict`` (an MLflow pyfunc model, a scikit-learn estimator) or a function of
            one batch.
        data: The inputs, one row per prediction: a NumPy array, pandas DataFrame, torch
            tensor, list, or a dict of those. Batches wrap around at the end.
        batch_sizes: Batch sizes to measure (positive integers), in order.
        warmup_s: Seconds of un-measured calls before each window (0: none).
        min_duration_s: Shortest window per batch size in seconds; the window also spans ten
            update periods of the slowest counter. Keep the default (2 s) for real figures.
        meters: Meter names or instances, in priority order (as for the tracker).
        region: Carbon-intensity region (for the report's configuration).
        pue: Power usage effectiveness (≥ 1).
        scope: ``process`` (default: this process tree's share) or ``machine``.
        sample_interval_s: Power sampling interval for meters without a counter.

    Returns:
        The :class:`~mlflow_green.inference.result.InferenceReport`: one frozen result per batch size.

    Raises:
        ConfigError: A bad setting, empty data or a model that is not callable, before any call.
        InferenceError: The model raised; the cause is its exception.

    Example::

        report = mlflow_green.measure_inference(model, x_test, batch_sizes=(1, 32))
        print(report[32].energy_per_prediction_j, report[32].latency_p95_ms)
    """
    options = InferenceOptions(
        batch_sizes=batch_sizes,  # type: ignore[arg-type]
        warmup_s=warmup_s,
        min_duration_s=min_duration_s,
        meters=meters,
        region=region,
        pue=pue,
        scope=scope,
        sample_interval_s=sample_interval_s,
    )
    return measure_with_options(model_or_predict_fn, data, options)


def measure_with_options(model_or_predict_fn: Any, data: Any, options: InferenceOptions) -> InferenceReport:
    """:func:`measure_inference` with ready, validated options (what the evaluator calls)."""
    predictor = as_predictor(model_or_predict_fn)
    rows = row_count(data)
    sizes = options.batch_sizes
    prepared = {size: [predictor.prepare(b) for b in make_batches(data, size)] for size in sizes}
    tracker = EnergyTracker(**options.tracker_settings)  # configuration errors surface here, before any call
    results: list[InferenceResult] = []
    tracker.start()
    period_s: float | None = None
    try:
        with predictor.session():
            for size in sizes:
                _run(predictor, prepared[size], size, options.warmup_s, "warm-up", _warm_up)
                result = _run(predictor, prepared[size], size, options.min_duration_s, "measurement",
                              lambda p, b, s: _window(tracker, p, b, size, s))
                results.append(result)
                del prepared[size]  # free each size's batches once measured
        period_s = counter_update_period_s(tracker)
    finally:
        tracker.stop()
    return InferenceReport(
        results=tuple(results),
        model=predictor.description,
        rows=rows,
        meters=tracker.meters_tag(),
        faults=tuple(tracker.faults),
        warmup_s=options.warmup_s,
        min_duration_s=options.min_duration_s,
        update_period_s=period_s,
        config={**tracker.config.describe(), **options.describe()},
        started_at_unix_s=tracker.started_at_unix_s,
    )


def counter_update_period_s(tracker: EnergyTracker) -> float | None:
    """The slowest update period of what the tracker reads, in seconds; None when none is known.

    The tracker's ``counter_update_period_s`` (every counter's period it knows: NVML learns its
    counters' periods in the first second or two, so this is asked again at the end of each
    window), and, when a component is sampled (power × time), the sampling interval: a sampled
    reading changes once per sample.
    """
    periods: list[float] = []
    own = tracker.counter_update_period_s
    if _positive(own):
        periods.append(float(own))  # type: ignore[arg-type]
    selection = tracker.selection
    if selection is not None:
        selected = {id(m) for m in selection.meters}
        sampled = any(c.availability.provenance == "sampled" for c in selection.choices if id(c.meter) in selected)
        if sampled and _positive(tracker.config.sample_interval_s):
            periods.append(float(tracker.config.sample_interval_s))
    return max(periods) if periods else None


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _run(predictor: Predictor, batches: list[Any], size: int, seconds: float, phase: str,
         body: Callable[[Callable[[Any], Any], list[Any], float], Any]) -> Any:
    try:
        return body(predictor.predict, batches, seconds)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        raise InferenceError(
            f"{predictor.description} raised {type(exc).__name__} during the {phase} at batch size {size}: {exc}"
        ) from exc


def _warm_up(predict: Callable[[Any], Any], batches: list[Any], seconds: float) -> None:
    if seconds <= 0:
        return
    clock = time.perf_counter
    deadline = clock() + seconds
    count = len(batches)
    i = 0
    while True:
        predict(batches[i % count])
        i += 1
        if clock() >= deadline:
            return


def _window_s(tracker: EnergyTracker, min_duration_s: float) -> float:
    """``min_duration_s``, or ten update periods of the slowest counter when that is longer."""
    return max(min_duration_s, UPDATE_PERIODS_PER_WINDOW * (counter_update_period_s(tracker) or 0.0))


def _window(tracker: EnergyTracker, predict: Callable[[Any], Any], batches: list[Any], size: int,
            min_duration_s: float, max_samples: int = MAX_LATENCY_SAMPLES) -> InferenceResult:
    """Predict back to back between two counter readings, one clock read per call, for at least
    ``min_duration_s`` and ten update periods of the slowest counter.

    The loop does nothing but call, read the clock and keep the time (of the first ``max_samples``
    calls; then it only counts): benchmarks/inference_energy.py measures what that costs against
    a bare loop.
    """
    name = f"inference-batch-{size}"
    stamps: list[float] = []
    record = stamps.append
    clock = time.perf_counter
    feed = itertools.cycle(batches)
    tracker.begin(name)
    first = now = clock()
    window_s = _window_s(tracker, min_duration_s)
    calls = 0
    for calls, batch in zip(range(1, max_samples + 1), feed):
        predict(batch)
        now = clock()
        record(now)
        # judged as the duration is reported: ``now >= first + window_s`` let it read 0.39999999999 s of 0.4 s (the sum rounds)
        if now - first >= window_s and calls >= MIN_CALLS_PER_WINDOW:
            longer = _window_s(tracker, min_duration_s)  # a counter's update period may have been learnt meanwhile
            if longer <= window_s:
                break
            window_s = longer
    else:  # the latency samples are full: keep calling, counting only
        for calls, batch in enumerate(feed, calls + 1):
            predict(batch)
            now = clock()
            if now - first >= window_s:
                longer = _window_s(tracker, min_duration_s)
                if longer <= window_s:
                    break
                window_s = longer
    measurement = tracker.end(name)
    latencies_ms = [(later - earlier) * 1000.0 for earlier, later in zip([first, *stamps], stamps)]
    return InferenceResult(
        batch_size=size,
        predictions=calls * size,
        batches=calls,
        duration_s=now - first,
        measurement=measurement,
        latency_p50_ms=percentile(latencies_ms, 0.50),
        latency_p95_ms=percentile(latencies_ms, 0.95),
        latency_mean_ms=sum(latencies_ms) / len(latencies_ms),
        window_s=window_s,
    )
