"""Joules per prediction of float, int8 and pruned digits models, and the measurement's own overhead.

Trains a small MLP on scikit-learn's digits (PyTorch, a few seconds), derives two compressed
copies, and measures each with ``mlflow_green.measure_inference`` at batch sizes 1 and 64:

- ``float``: the trained model, float32;
- ``int8``: ``torch.ao.quantization.quantize_dynamic`` on its Linear layers (int8 weights, int8 GEMM);
- ``pruned``: 80 % of each Linear layer's weights zeroed (L1, unstructured), made permanent
  (``prune.remove``): dense kernels over zeros.

Then the overhead of the measurement itself against a bare predict loop (budget ≤ 1 %):

- **A/B**: CPU time per call inside ``measure_inference``'s window (the call's CPU time less its
  set-up outside the window — meters started and stopped, batches prepared — measured apart and
  printed) against the same batches predicted in a bare ``for`` loop, interleaved ABBA, median of
  ``--repeats``; CPU time, because on a shared machine the wall time of two consecutive seconds
  differs by more than the 1 % to resolve (the wall-clock A/B is printed too, with its spread);
- **direct cost**: the window loop's bookkeeping per call (one clock read, one list append),
  timed on a no-op model, as a share of one real call.

Usage::

    python benchmarks/inference_energy.py [--seconds 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

BUDGET_PERCENT = 1.0
BATCH_SIZES = (1, 64)


def train(x: Any, y: Any, torch: Any) -> Any:
    """A 64-256-256-10 MLP, full-batch Adam, 150 steps (seconds on a CPU)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def variants(model: Any, torch: Any) -> dict[str, Any]:
    import torch.nn.utils.prune  # noqa: F401 - a submodule torch does not import by itself

    int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    pruned = copy.deepcopy(model)
    for module in pruned.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.utils.prune.l1_unstructured(module, "weight", amount=0.8)
            torch.nn.utils.prune.remove(module, "weight")
    return {"float": model, "int8": int8, "pruned": pruned}


def accuracy(model: Any, x: Any, y: Any, torch: Any) -> float:
    with torch.inference_mode():
        return float((model(x).argmax(1) == y).float().mean())


Rates = tuple[float, float]
"""(calls per wall second, calls per CPU second of this process)."""


def bare_rate(predict: Callable[[Any], Any], batches: list[Any], calls: int) -> Rates:
    """Calls per second of a bare loop over the same batches."""
    count = len(batches)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(calls):
        predict(batches[i % count])
    return calls / (time.perf_counter() - wall), calls / (time.process_time() - cpu)


def measured_rate(predict: Callable[[Any], Any], data: Any, size: int, seconds: float,
                  setup_cpu_s: float = 0.0) -> Rates:
    """Calls per second of measure_inference (the real meters, no warm-up): per wall second of its
    window, and per CPU second of the call less ``setup_cpu_s`` (what it costs outside the window)."""
    import mlflow_green

    cpu = time.process_time()
    result = mlflow_green.measure_inference(predict, data, batch_sizes=(size,), warmup_s=0.0, min_duration_s=seconds)
    cpu_s = time.process_time() - cpu - setup_cpu_s
    return result[size].batches / result[size].duration_s, result[size].batches / cpu_s


def setup_cpu_s(predict: Callable[[Any], Any], data: Any, size: int) -> float:
    """CPU seconds of a measure_inference call around a minimal window (meters started and stopped,
    batches prepared, two calls): its cost outside the window, not billed to any prediction."""
    import mlflow_green

    samples = []
    for _ in range(5):
        cpu = time.process_time()
        mlflow_green.measure_inference(predict, data, batch_sizes=(size,), warmup_s=0.0, min_duration_s=1e-6)
        samples.append(time.process_time() - cpu)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="window per batch size (min_duration_s)")
    parser.add_argument("--repeats", type=int, default=5, help="A/B pairs for the overhead")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: on a shared 2-core machine more threads spin and stall)")
    args = parser.parse_args()
    logging.getLogger("mlflow_green").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import torch
    from sklearn.datasets import load_digits

    import mlflow_green
    from mlflow_green.inference.batches import make_batches

    torch.set_num_threads(args.threads)
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]
    models = variants(train(x_train, y_train, torch), torch)
    print(f"digits MLP 64-256-256-10, {len(x_test)} test rows, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; windows of {args.seconds:g} s after 1 s of warm-up, batch sizes "
          f"{', '.join(map(str, BATCH_SIZES))}")
    rows = []
    for name, model in models.items():
        report = mlflow_green.measure_inference(model, x_test.numpy(), batch_sizes=BATCH_SIZES, warmup_s=1.0,
                                                min_duration_s=args.seconds)
        rows.append((name, model, report))
    print(f"  meters: {rows[0][2].meters} (scope {rows[0][2].scope})")
    print(f"  {'model':<7} {'acc':>6} {'batch':>5} {'J/prediction':>13} {'power':>8} {'p50':>9} {'p95':>9} "
          f"{'predictions/s':>14}  provenance")
    for name, model, report in rows:
        for r in report:
            print(f"  {name:<7} {accuracy(model, x_test, y_test, torch):6.3f} {r.batch_size:5d} "
                  f"{r.energy_per_prediction_j * 1000:10.4f} mJ {r.power_w:6.1f} W {r.latency_p50_ms:6.3f} ms "
                  f"{r.latency_p95_ms:6.3f} ms {r.throughput_per_s:14,.0f}  {r.provenance}")
    base = {r.batch_size: r.energy_per_prediction_j for r in rows[0][2]}
    for name, _, report in rows[1:]:
        ratios = ", ".join(f"batch {r.batch_size}: {r.energy_per_prediction_j / base[r.batch_size]:.2f}x float"
                           for r in report)
        print(f"  {name} vs float: {ratios}")

    print(f"overhead of the measurement vs a bare predict loop (float model, A/B interleaved ABBA, {args.repeats} pairs)")
    model = models["float"]
    verdicts = []
    with torch.inference_mode():
        for size in BATCH_SIZES:
            batches = make_batches(x_test, size)
            calls = max(int(bare_rate(model, batches, 50)[0] * args.seconds), 2)
            setup_s = setup_cpu_s(model, x_test, size)
            bare_rate(model, batches, calls)  # warm
            pairs = []
            for repeat in range(args.repeats):  # ABBA: which loop runs first alternates
                if repeat % 2:
                    measured_first = measured_rate(model, x_test, size, args.seconds, setup_s)
                    pairs.append((bare_rate(model, batches, calls), measured_first))
                else:
                    bare_first = bare_rate(model, batches, calls)
                    pairs.append((bare_first, measured_rate(model, x_test, size, args.seconds, setup_s)))
            wall_each = [100.0 * (b[0] - m[0]) / b[0] for b, m in pairs]
            cpu_each = [100.0 * (b[1] - m[1]) / b[1] for b, m in pairs]
            bare = statistics.median(b[0] for b, _ in pairs)
            ab = statistics.median(cpu_each)
            noop: Callable[[Any], Any] = lambda batch: batch  # noqa: E731 - the loop's own cost per call
            noop_batches = make_batches(x_test, size)
            noop_bare = bare_rate(noop, noop_batches, 200_000)[0]
            noop_measured = measured_rate(noop, x_test, size, 0.5)[0]
            per_call_us = max(1e6 / noop_measured - 1e6 / noop_bare, 0.0)
            direct = 100.0 * per_call_us * 1e-6 * bare
            verdicts.append(max(ab, direct))
            print(f"  batch {size:3d}: A/B CPU time per call {ab:+.2f} % (pairs {min(cpu_each):+.1f}..{max(cpu_each):+.1f} %;"
                  f" wall clock {statistics.median(wall_each):+.1f} %, pairs {min(wall_each):+.1f}..{max(wall_each):+.1f} %);"
                  f" set-up outside the window {setup_s * 1000:.0f} ms CPU; direct cost {per_call_us:.2f} µs per call = {direct:.3f} % of a "
                  f"{1e6 / bare:.1f} µs call")
    worst = max(verdicts)
    print(f"  verdict: {'within budget' if worst <= BUDGET_PERCENT else 'OVER BUDGET'} (worst {worst:+.2f} %, "
          f"budget ≤ {BUDGET_PERCENT:g} %)")


if __name__ == "__main__":
    main()
