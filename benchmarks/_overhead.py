"""The A/B harness shared by the callback-overhead benchmarks (not a benchmark itself)."""

from __future__ import annotations

import statistics
from collections.abc import Callable

BUDGET_PERCENT = 1.0

FitResult = tuple[float, list[float]]
"""(whole fit in seconds, the intervals between consecutive epoch ends in seconds)."""


def compare(
    *,
    name: str,
    timed_fit: Callable[[bool], FitResult],
    repeats: int,
    epochs: int,
    steps: int,
    hooks_ms_per_epoch: Callable[[], float],
    per_fit_ms: Callable[[], float],
    wrapper_us_per_step: float,
) -> None:
    """Run fits without and with the callback alternately and print the figures and the verdict."""
    timed_fit(True)  # warm-up: first store access, first meter probe, kernels
    plain: list[FitResult] = []
    green: list[FitResult] = []
    for _ in range(repeats):
        plain.append(timed_fit(False))
        green.append(timed_fit(True))
    plain_epoch_s = statistics.median(i for _, intervals in plain for i in intervals)
    green_epoch_s = statistics.median(i for _, intervals in green for i in intervals)
    plain_fit_s = statistics.median(t for t, _ in plain)
    green_fit_s = statistics.median(t for t, _ in green)
    overhead = 100.0 * (green_epoch_s - plain_epoch_s) / plain_epoch_s
    direct = 100.0 * (hooks_ms_per_epoch() / 1000 + wrapper_us_per_step * 1e-6 * steps) / plain_epoch_s
    print(f"{name}: {epochs} epochs × {steps} steps of {plain_epoch_s / steps * 1000:.2f} ms, {repeats} fits each, A/B interleaved")
    print(f"  epoch, steady state (median of {sum(len(i) for _, i in plain)} intervals each)")
    print(f"    without callback   {plain_epoch_s * 1000:8.1f} ms")
    print(f"    with GreenCallback {green_epoch_s * 1000:8.1f} ms")
    print(f"    A/B overhead       {overhead:+8.2f} %   (budget ≤ {BUDGET_PERCENT} %)")
    print(f"  direct cost: epoch hooks {hooks_ms_per_epoch():.2f} ms/epoch + per-step {wrapper_us_per_step:.2f} µs"
          f" = {direct:.3f} % of an epoch")
    print(f"  whole fit (median): {plain_fit_s:.3f} s without, {green_fit_s:.3f} s with;"
          f" begin + end of fit in the callback: {per_fit_ms():.0f} ms per fit (inspection, start, totals, report)")
    print("  verdict:", "within budget" if max(overhead, direct) <= BUDGET_PERCENT else "OVER BUDGET")


def timed_hooks(cls: type, prefix: str = "on_") -> tuple[type, dict[str, float]]:
    """A subclass of callback ``cls`` whose every hook call is timed; and the dict of totals."""
    import time

    totals: dict[str, float] = {}

    class Timed(cls):  # type: ignore[misc, valid-type]
        def __getattribute__(self, name: str):  # noqa: ANN204
            attribute = super().__getattribute__(name)
            if not name.startswith(prefix) or not callable(attribute):
                return attribute

            def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                start_s = time.perf_counter()
                try:
                    return attribute(*args, **kwargs)
                finally:
                    totals[name] = totals.get(name, 0.0) + time.perf_counter() - start_s

            return timed

    Timed.__name__ = cls.__name__
    return Timed, totals
