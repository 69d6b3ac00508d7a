"""The accounting shared by the callback-overhead benchmarks (not a benchmark itself).

The budgets (DESIGN.md §6, for a model the size of the digits zoo): the callback's work per
epoch ≤ 0.2 % of the epoch, and its fixed cost per fit ≤ 20 ms. Both are *direct* costs: the
time the training thread spends inside the callback (every hook call timed by the wall clock; a fit
hook's thread CPU too),
plus its per-batch work timed where it runs (once per batch inside the fits without the callback, see
``_in_fit_probe``: about twenty times what a warm loop of calls reads), and — per epoch — the CPU time of the
callback's own background threads (the epoch's accounting, spool writes, looks for new
processes), which a framework keeping every core busy loses too; the verdict is printed both ways.
The background CPU per epoch is what ran between two epoch ends of a fit (the steady work); what
ran before a fit's first epoch end and after its last (the fit's tags and model metrics, looks) is
the fit's own and joins the fixed cost.
Whole-fit A/B differences on a shared 2-core machine are noisier (±20 %) than the 0.2 % being measured, so they are printed for information.

The fixed cost is split into the callback's own work (meters, model profile, final totals,
tags, report) and the wait for MLflow: binding the run and, at the end of the fit, the wait
until the tracking server has the final writes (so that ``fit`` returns with the run complete).

Python's garbage collector runs when the process has allocated enough, whoever allocated it: a
full collection over TensorFlow's or torch's heap takes 100–300 ms on this machine and falls
inside whichever code runs then — now and then inside a hook. Its pause is timed (``gc.callbacks``)
and printed apart, not counted as the callback's work: it scales with the framework's heap, not
with what the callback does.
"""

from __future__ import annotations

import gc
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _in_fit_probe import InFitProbe

from mlflow_green.record.send_loop import SEND_INTERVAL_S

EPOCH_BUDGET_PERCENT = 0.2
FIT_BUDGET_MS = 20.0


class GcPauses:
    """Seconds spent in garbage collections so far (any thread), from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.total_s = 0.0
        self._started_s = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started_s = time.perf_counter()
        else:
            self.total_s += time.perf_counter() - self._started_s


GC = GcPauses()
gc.callbacks.append(GC)


@dataclass
class Clock:
    """Wall and thread-CPU seconds per name, garbage collections apart."""

    wall_s: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    gc_s: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, wall_s: float, cpu_s: float, gc_s: float = 0.0) -> None:
        self.wall_s[name] = self.wall_s.get(name, 0.0) + wall_s - gc_s
        self.cpu_s[name] = self.cpu_s.get(name, 0.0) + max(cpu_s - gc_s, 0.0)
        self.gc_s[name] = self.gc_s.get(name, 0.0) + gc_s

    def clear(self) -> None:
        self.wall_s.clear(), self.cpu_s.clear(), self.gc_s.clear()

    def gc_total(self, names: set[str]) -> float:
        return sum(t for n, t in self.gc_s.items() if n in names)

    def total(self, names: set[str], cpu: bool = False) -> float:
        source = self.cpu_s if cpu else self.wall_s
        return sum(t for n, t in source.items() if n in names)

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu, paused = time.perf_counter(), time.thread_time(), GC.total_s
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - wall, time.thread_time() - cpu, GC.total_s - paused)

        return timed


HOOKS = Clock()
TRAINING_ENDED = "training_ended"
"""The reading as an epoch's training ends, taken outside the callback's hooks (Keras: as its callback list begins
``on_epoch_end``; Lightning: as its fit loop's ``on_advance_end`` begins)."""
MLFLOW = Clock()

BACKGROUND_THREADS = ("mlflow-green-epochs", "mlflow-green-spool", "mlflow-green-process-looker", "mlflow-green-fit-watch")
"""The callback's own background threads: the epoch's accounting, spool writes, looks for new processes, Keras's fit watch
(the MLflow writer thread's sends are the tracking store's cost, as any MLflow logging's)."""


class BackgroundCpu:
    """CPU seconds of the callback's background threads, sampled at every timed hook.

    They run while the framework computes; on a machine whose cores the framework keeps busy they
    take that time from it, so they count as the callback's cost per epoch. A thread is sampled
    through its CPU clock (``pthread_getcpuclockid``); one seen for the first time is billed all
    its CPU so far (a looker left running by the previous fit is billed to the next: conservative).
    """

    def __init__(self, names: tuple[str, ...] = BACKGROUND_THREADS) -> None:
        self.names = names
        self.total_s = 0.0
        self.by_name_s: dict[str, float] = {}
        self._last: dict[int, tuple[threading.Thread, float]] = {}
        # Between two epoch ends of one fit: the steady per-epoch work (the previous epoch's accounting
        # and send, the looks). Before a fit's first epoch end and after its last: the fit's own (its
        # tags and model metrics at the first epoch, the looks until the meters stop).
        self.steady_s = 0.0
        self.steady_by_name_s: dict[str, float] = {}
        self.steady_intervals = 0
        self._epoch_end: tuple[float, dict[str, float]] | None = None

    def fit_started(self) -> None:
        """A fit starts: the next epoch end is its first."""
        self._epoch_end = None

    def epoch_ended(self) -> None:
        """An epoch ends (sampled as its hook returns): what ran since the previous epoch end of this fit is steady work."""
        if self._epoch_end is not None:
            total_s, by_name = self._epoch_end
            self.steady_s += self.total_s - total_s
            for name, used_s in self.by_name_s.items():
                self.steady_by_name_s[name] = self.steady_by_name_s.get(name, 0.0) + used_s - by_name.get(name, 0.0)
            self.steady_intervals += 1
        self._epoch_end = (self.total_s, dict(self.by_name_s))

    def sample(self) -> None:
        for thread in threading.enumerate():
            if thread.name not in self.names or thread.ident is None:
                continue
            try:
                cpu_s = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except (OSError, ProcessLookupError):
                continue
            last = self._last.get(id(thread))
            used_s = cpu_s - (last[1] if last is not None and last[0] is thread else 0.0)
            self.total_s += used_s
            self.by_name_s[thread.name] = self.by_name_s.get(thread.name, 0.0) + used_s
            self._last[id(thread)] = (thread, cpu_s)

    def clear(self) -> None:
        self.sample()
        self.total_s = self.steady_s = 0.0
        self.by_name_s, self.steady_by_name_s = {}, {}
        self.steady_intervals = 0
        self._epoch_end = None


EPOCH_END_HOOKS = {"on_epoch_end", "on_train_epoch_end"}  # Keras, Lightning
FIT_START_HOOKS = {"on_train_begin", "on_fit_start"}
CPU_SAMPLED_HOOKS = FIT_START_HOOKS | {"on_train_end", "_finish", "setup", "on_train_start", "teardown"}  # a fit's (Keras, Lightning):
# thread CPU sampled too

BACKGROUND = BackgroundCpu()
WRITER = BackgroundCpu(("mlflow-green-writer",))
"""The MLflow writer thread: the tracking store's work on our writes (printed for information)."""


def timed_hooks(cls: type, names: set[str]) -> type:
    """A subclass of callback ``cls`` whose hooks ``names`` are timed into :data:`HOOKS`, and whose
    session's MLflow waits (binding the run, the final flush) are timed into :data:`MLFLOW`.

    The hooks are wrapped once, on the class: the timing adds one call per hook and nothing to the
    callback's other attribute reads (an ``__getattribute__`` override would slow every one).
    """

    def timed_method(name: str) -> Callable[..., Any]:
        method = getattr(cls, name)
        with_cpu = name in CPU_SAMPLED_HOOKS

        def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
            # The hook is timed as the framework's step left the caches, by the wall clock alone (read in user
            # space): a system call before it (the thread's CPU clock, the background threads' samples) would
            # warm the kernel paths the hook's own clock reads take (it made hooks look 15-25 % cheaper), and
            # one inside the timed stretch would be billed to the hook (15-20 µs each, cold, on this VM).
            # An epoch hook's thread CPU is not sampled; a fit hook's is (its calls dwarf the clock's).
            paused = GC.total_s
            if with_cpu:
                wall, cpu = time.perf_counter(), time.thread_time()
            else:
                wall = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                wall = time.perf_counter() - wall
                HOOKS.add(name, wall, time.thread_time() - cpu if with_cpu else wall, GC.total_s - paused)
                BACKGROUND.sample()  # what the threads did while the framework ran, up to this hook's end
                WRITER.sample()
                if name in FIT_START_HOOKS:
                    BACKGROUND.fit_started()
                elif name in EPOCH_END_HOOKS:
                    BACKGROUND.epoch_ended()

        timed.__name__ = name
        return timed

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        cls.__init__(self, *args, **kwargs)
        output = self.session.output
        output.bind = MLFLOW.timed("bind", output.bind)
        output.close = MLFLOW.timed("close", output.close)
        # the reading as an epoch's training ends, outside the callback's hooks (Keras: as its callback list begins
        # on_epoch_end; Lightning: as its fit loop's on_advance_end begins), timed as the hooks are
        ended = self.session.training_ended

        def training_ended() -> None:
            wall_s, paused_s = time.perf_counter(), GC.total_s
            try:
                ended()
            finally:
                wall_s = time.perf_counter() - wall_s
                HOOKS.add(TRAINING_ENDED, wall_s, wall_s, GC.total_s - paused_s)

        self.session.training_ended = training_ended

    namespace: dict[str, Any] = {name: timed_method(name) for name in names}
    namespace["__init__"] = __init__
    return type(cls.__name__, (cls,), namespace)


def per_call_us(fn: Callable[[], Any], bare: Callable[[], Any], calls: int = 100_000) -> float:
    """Microseconds ``fn`` costs per call more than ``bare``."""
    start_s = time.perf_counter()
    for _ in range(calls):
        bare()
    bare_s = time.perf_counter() - start_s
    start_s = time.perf_counter()
    for _ in range(calls):
        fn()
    return max(time.perf_counter() - start_s - bare_s, 0.0) / calls * 1e6


FitResult = tuple[float, list[float]]
"""(whole fit in seconds, the intervals between consecutive epoch ends in seconds)."""


def report(
    *,
    name: str,
    timed_fit: Callable[[bool], FitResult],
    repeats: int,
    epochs: int,
    steps: int,
    epoch_hooks: set[str],
    fit_hooks: set[str],
    per_batch_us: float,
    validation_steps: int = 0,
    per_validation_batch_us: float = 0.0,
    batch_probe: InFitProbe | None = None,
    validation_probe: InFitProbe | None = None,
    per_batch_extra_us: float = 0.0,
    first_batch_probe: InFitProbe | None = None,
) -> None:
    """Run fits without and with the callback alternately; print the figures and the verdicts.

    ``per_batch_us`` / ``per_validation_batch_us``: the per-batch work timed in a warm loop; where the fits
    without the callback ran ``batch_probe`` / ``validation_probe`` at each batch's end, the work's cost in
    place (see ``_in_fit_probe``) is counted instead, plus ``per_batch_extra_us`` parts the probe leaves out;
    ``first_batch_probe``: a fit's first batch's work timed apart (where the hooks step out of the later batches:
    once per fit, counted in the fixed cost)."""
    timed_fit(True)  # warm-up: first store access, first meter probe, kernels
    HOOKS.clear(), MLFLOW.clear(), BACKGROUND.clear(), WRITER.clear()
    plain: list[FitResult] = []
    green: list[FitResult] = []
    for _ in range(repeats):
        plain.append(timed_fit(False))
        green.append(timed_fit(True))
    BACKGROUND.sample()
    WRITER.sample()
    epoch_s = statistics.median(i for _, intervals in plain for i in intervals)
    green_epoch_s = statistics.median(i for _, intervals in green for i in intervals)
    n_epochs = repeats * epochs
    epoch_ms = 1000 * HOOKS.total(epoch_hooks) / n_epochs
    warm = f"{per_batch_us:.2f} µs and {per_validation_batch_us:.2f} µs in a warm loop"
    if batch_probe is not None and batch_probe.samples:
        per_batch_us = batch_probe.cost_us() + per_batch_extra_us
    if validation_probe is not None and validation_probe.samples:
        per_validation_batch_us = validation_probe.cost_us()
    first_us = first_batch_probe.cost_us() if first_batch_probe is not None and first_batch_probe.samples else 0.0
    per_epoch = epoch_ms + (per_batch_us * steps + per_validation_batch_us * validation_steps) / 1000
    share = 100 * per_epoch / (1000 * epoch_s)
    fit_ms = 1000 * HOOKS.total(fit_hooks) / repeats
    fit_cpu_ms = 1000 * HOOKS.total(fit_hooks, cpu=True) / repeats
    bind_ms = 1000 * MLFLOW.wall_s.get("bind", 0.0) / repeats
    close_ms = 1000 * MLFLOW.wall_s.get("close", 0.0) / repeats
    own_ms = fit_ms - bind_ms - close_ms
    print(f"{name}: {epochs} epochs × {steps} steps, epoch {epoch_s * 1000:.0f} ms; {repeats} fits with and without, interleaved")
    print(f"  per epoch: epoch hooks {epoch_ms:.2f} ms (wall) + per batch {per_batch_us:.2f} µs × {steps}"
          f" + per validation batch {per_validation_batch_us:.2f} µs × {validation_steps}"
          f" = {per_epoch:.2f} ms = {share:.3f} % of an epoch   (budget ≤ {EPOCH_BUDGET_PERCENT} %)")
    if batch_probe is not None and batch_probe.samples:
        print(f"  per batch timed inside the fits, once per batch ({batch_probe.samples} batches; {warm})")
    by_hook = ", ".join(f"{name} {1000 * HOOKS.wall_s.get(name, 0.0) / n_epochs:.3f}" for name in sorted(epoch_hooks))
    print(f"  per epoch by hook (ms): {by_hook}")
    intervals = max(BACKGROUND.steady_intervals, 1)
    background_ms = 1000 * BACKGROUND.steady_s / intervals  # steady: between two epoch ends of a fit
    background_fit_ms = max(1000 * BACKGROUND.total_s - background_ms * n_epochs, 0.0) / repeats
    total_epoch_ms = per_epoch + background_ms
    total_share = 100 * total_epoch_ms / (1000 * epoch_s)
    print(f"  per epoch with the background threads' CPU (epoch accounting, spool writes, process looks; between two"
          f" epoch ends, {BACKGROUND.steady_intervals} intervals): {per_epoch:.2f} + {background_ms:.2f} = {total_epoch_ms:.2f} ms"
          f" = {total_share:.3f} % of an epoch   (budget ≤ {EPOCH_BUDGET_PERCENT} %)")
    by_thread = ", ".join(f"{n} {1000 * t / intervals:.2f}" for n, t in sorted(BACKGROUND.steady_by_name_s.items()))
    print(f"  background per epoch by thread (ms): {by_thread or 'none'}; as a share of one core:"
          f" {100 * background_ms / (1000 * epoch_s):.3f} %; the fit's own background work (its tags and model"
          f" metrics, looks before the first epoch end and after the last): {background_fit_ms:.1f} ms per fit"
          f" (averaged over every epoch instead, the fit's own included: {1000 * BACKGROUND.total_s / n_epochs:.2f} ms)")
    print(f"  for information, the MLflow writer thread (the tracking store's work on our writes, sent at most every"
          f" {SEND_INTERVAL_S:g} s): {1000 * WRITER.total_s / n_epochs:.2f} ms CPU per epoch")
    fixed_ms = own_ms + bind_ms + background_fit_ms + first_us / 1000
    print(f"  fixed per fit: {fit_ms:.1f} ms in the fit-level hooks (thread CPU {fit_cpu_ms:.1f} ms) ="
          f" own work {own_ms:.1f} ms (meters, model profile, totals, tags, report)"
          f" + binding the run {bind_ms:.1f} ms + final writes acknowledged by MLflow {close_ms:.1f} ms"
          f"   (budget ≤ {FIT_BUDGET_MS:.0f} ms: own work + binding + the fit's background work"
          + (" + its first batch's hooks" if first_us else "")
          + f" {own_ms:.1f} + {bind_ms:.1f} + {background_fit_ms:.1f}"
          + (f" + {first_us / 1000:.1f}" if first_us else "") + f" = {fixed_ms:.1f} ms)")
    by_fit_hook = ", ".join(f"{name} {1000 * HOOKS.wall_s.get(name, 0.0) / repeats:.1f} (CPU {1000 * HOOKS.cpu_s.get(name, 0.0) / repeats:.1f})"
                            for name in sorted(fit_hooks))
    print(f"  per fit by hook (ms, wall; the final writes' wait included): {by_fit_hook}")
    gc_epoch_ms = 1000 * HOOKS.gc_total(epoch_hooks) / n_epochs
    gc_fit_ms = 1000 * HOOKS.gc_total(fit_hooks) / repeats
    print(f"  garbage collections that fell inside the hooks (the framework's heap; not counted above):"
          f" {gc_epoch_ms:.2f} ms per epoch, {gc_fit_ms:.1f} ms per fit ("
          + ", ".join(f"{n} {1000 * HOOKS.gc_s.get(n, 0.0) / repeats:.1f}" for n in sorted(fit_hooks)) + ")")
    whole = 100 * (green_epoch_s - epoch_s) / epoch_s
    print(f"  for information, A/B median epoch: {epoch_s * 1000:.1f} ms without, {green_epoch_s * 1000:.1f} ms with"
          f" ({whole:+.2f} %, within the machine's noise)")
    ok_thread = share <= EPOCH_BUDGET_PERCENT
    ok_epoch = total_share <= EPOCH_BUDGET_PERCENT  # the threads' CPU is taken from a framework that keeps the cores busy
    ok_fit = fixed_ms <= FIT_BUDGET_MS
    print("  verdict: per epoch on the training thread", "within budget" if ok_thread else "OVER BUDGET",
          "| per epoch with the background threads", "within budget" if ok_epoch else "OVER BUDGET", "| fixed per fit",
          "within budget" if ok_fit else "OVER BUDGET",
          f"(the final MLflow write wait, {close_ms:.0f} ms, is the tracking store's latency)")
