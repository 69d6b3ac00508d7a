"""The framework-free core of the training callbacks: one measured training, logged to MLflow.

Keras and Lightning callbacks are thin adapters that call a :class:`TrainingSession` at
their hooks. The session owns the tracker, the epoch and phase bookkeeping, projections,
budgets, quality per kWh, FLOP/J, the run and everything written into it.

Phases within an epoch: validation is measured by counters (its own window); the data phase
(time the loop waited on input, reported by the adapter) is apportioned the energy of the
non-validation part of the epoch by its share of that time — counters are not read per batch,
which would cost more than the 1 % overhead budget; train is the rest.

Example::

    session = TrainingSession(framework="keras", tracker=EnergyTracker())
    session.begin_fit(planned_epochs=5, profile=profile)
    for epoch in range(5):
        session.begin_epoch(epoch)
        ...                                  # session.add_data_wait(seconds) from batch timings
        session.begin_phase("validation"); ...; session.end_phase("validation", samples=n_val)
        result = session.end_epoch(epoch, logs={"val_accuracy": 0.9}, train_samples=n_train)
    session.end_fit("FINISHED")
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow_green._version import __version__
from mlflow_green.measure import hardware
from mlflow_green.measure.readings import Measurement, Snapshot
from mlflow_green.measure.tracker import EnergyTracker
from mlflow_green.record import schema
from mlflow_green.record.metrics import energy_metrics, measured_gpus, phase_metrics, run_tags
from mlflow_green.record.recorder import RunRecorder
from mlflow_green.record.report import build_report
from mlflow_green.record.runs import RunHandle, resolve_run
from mlflow_green.training.budget import EnergyBudget
from mlflow_green.training.inspection import ModelProfile
from mlflow_green.units import joules_to_kwh

logger = logging.getLogger(__name__)

STATE_VERSION = 1
TRAINING_FLOPS_PER_FORWARD = 3.0
"""Training FLOPs ≈ 3 × forward FLOPs per sample (forward + backward, the usual estimate)."""

_EMPTY = Measurement(0.0, ())
_FIT_PHASES = ("train", "validation", "data")


def resolve_quality_metric(requested: str | None, logs: Mapping[str, Any]) -> str | None:
    """The quality metric to use from epoch ``logs``.

    ``requested`` if given (None when absent from ``logs``); otherwise ``val_accuracy``, then
    the first ``val_*`` metric containing ``acc``, then ``accuracy``, then any metric containing
    ``acc`` (loss-like metrics are never chosen automatically).

    Example:
        >>> resolve_quality_metric(None, {"loss": 0.3, "val_acc": 0.9})
        'val_acc'
    """
    if requested:
        return requested if requested in logs else None
    names = [str(k) for k in logs if not str(k).startswith(schema.METRIC_PREFIX)]
    for candidate in ("val_accuracy",):
        if candidate in names:
            return candidate
    for name in names:
        if name.startswith("val_") and "acc" in name:
            return name
    if "accuracy" in names:
        return "accuracy"
    return next((name for name in names if "acc" in name), None)


@dataclass
class EpochResult:
    """What one epoch measured, for the adapter.

    Attributes:
        measurement: The epoch window (all ranks).
        live: The few figures to show in the progress bar (schema keys).
        stop_reason: Non-empty when a budget says training must stop.
    """

    measurement: Measurement
    live: dict[str, float] = field(default_factory=dict)
    stop_reason: str | None = None


class TrainingSession:
    """One callback's measurements across fits (and test/predict calls), logged to MLflow.

    Args:
        framework: ``keras`` or ``lightning`` (for the report).
        tracker: A configured, unstarted tracker; a fresh copy is started for each fit.
        quality_metric: The metric for ``green/accuracy_per_kwh``; None picks one (see
            :func:`resolve_quality_metric`).
        budget: Energy / emissions limits; training stops before exceeding them.
        log_report: Write ``green/report.json`` at the end of each fit.
        run_name: Name of the run started when there is no active run.
    """

    def __init__(
        self,
        *,
        framework: str,
        tracker: EnergyTracker,
        quality_metric: str | None = None,
        budget: EnergyBudget | None = None,
        log_report: bool = True,
        run_name: str | None = None,
    ) -> None:
        self.framework = framework
        self._template = tracker
        self.config = tracker.config
        self.quality_metric = quality_metric
        self.budget = budget or EnergyBudget()
        self.log_report = log_report
        self.run_name = run_name
        # distributed: the adapter sets these (all ranks call the session at the same points)
        self.gather: Callable[[Measurement], list[Measurement]] | None = None
        self.is_logging_rank = True
        self.world_size = 1
        self.hosts = 1
        self.rank_totals: list[dict[str, Any]] = []
        # across fits of one run
        self.run: RunHandle | None = None
        self.run_id: str | None = None
        self._recorder: RunRecorder | None = None
        self.carried = _EMPTY
        self.carried_phases: dict[str, Measurement] = {}
        self.samples: dict[str, int] = {}
        self.last_step: int | None = None
        self.eval_totals: dict[str, Measurement] = {}
        # this fit
        self.tracker: EnergyTracker | None = None
        self.phases: dict[str, Measurement] = {}
        self.profile: ModelProfile | None = None
        self.quality: tuple[str, float] | None = None
        self.stop_reason: str | None = None
        self.epochs: list[dict[str, Any]] = []
        self._planned_epochs = 0
        self._epochs_done = 0
        self._epoch_energy_j = 0.0
        self._epoch_start: Snapshot | None = None
        self._epoch_validation = _EMPTY
        self._data_wait_s = 0.0
        self._last_epoch_end: Snapshot | None = None
        self.fit_total: Measurement | None = None
        self._last_total: Measurement | None = None
        self._step_offset = 0
        self._first_epoch: int | None = None
        self._eval_tracker: EnergyTracker | None = None
        self.resumed_run_id: str | None = None

    @classmethod
    def for_callback(
        cls,
        framework: str,
        *,
        quality_metric: str | None,
        max_energy_kwh: float | None,
        max_emissions_kg: float | None,
        live_metrics: bool | None,
        inspect_model: bool,
        log_report: bool,
        run_name: str | None,
        **tracker_options: Any,
    ) -> TrainingSession:
        """Validate a callback's options (``ConfigError`` at construction) and build its session.

        ``tracker_options`` are :class:`~mlflow_green.measure.tracker.EnergyTracker`'s: ``region``,
        ``pue``, ``meters``, ``sample_interval_s``, ``intensity_provider``.
        """
        from mlflow_green.validation import check_bool, check_name

        check_name("quality_metric", quality_metric, example="val_accuracy")
        check_name("run_name", run_name, example="baseline-cnn")
        check_bool("live_metrics", live_metrics, optional=True)
        check_bool("inspect_model", inspect_model)
        check_bool("log_report", log_report)
        return cls(
            framework=framework,
            tracker=EnergyTracker(**tracker_options),
            quality_metric=quality_metric,
            budget=EnergyBudget(max_energy_kwh, max_emissions_kg),
            log_report=log_report,
            run_name=run_name,
        )

    def reduce(self, measurement: Measurement) -> Measurement:
        """This rank's measurement combined with every other rank's (a collective call)."""
        if self.gather is None:
            return measurement
        parts = self.gather(measurement)
        combined = parts[0] if parts else measurement
        for part in parts[1:]:
            combined = combined.merge_parallel(part)
        return combined

    # -- run --------------------------------------------------------------------------------
    def bind_run(self, run: RunHandle | None = None, **resolve: Any) -> None:
        """Log into ``run``, else resolve one (explicit id, active run, or a new one)."""
        if not self.is_logging_rank:
            return
        if run is None and self.run is not None and self.run.owned:
            return  # a fit in progress keeps its run
        try:
            if run is None:
                run = resolve_run(run_name=self.run_name, **resolve)
        except Exception as exc:  # an unreachable server never stops the training
            logger.warning("mlflow-green: no MLflow run to log into (%s); measuring without logging", exc)
            return
        if self.run_id is not None and run.run_id != self.run_id:
            self._reset_run_totals()
        self.run, self.run_id = run, run.run_id
        self._recorder = RunRecorder(run.client, run.run_id)

    def _reset_run_totals(self) -> None:
        self.carried, self.carried_phases, self.samples, self.last_step = _EMPTY, {}, {}, None
        self.eval_totals = {}

    # -- fit --------------------------------------------------------------------------------
    def begin_fit(self, *, planned_epochs: int, profile: ModelProfile | None = None) -> None:
        """Start measuring a fit that ends at epoch ``planned_epochs`` (exclusive)."""
        self.tracker = self._template.fresh()
        self.tracker.start()
        self.phases = {}
        self.quality = None
        self.stop_reason = None
        self.epochs = []
        self.fit_total = None
        self._planned_epochs = int(planned_epochs)
        self._first_epoch = None
        self._epochs_done = 0
        self._epoch_energy_j = 0.0
        self._last_epoch_end = self.tracker.start_snapshot
        self.profile = profile
        self._log_tags()

    def begin_epoch(self, epoch: int) -> None:
        """An epoch starts (the first one fixes the step numbering and logs the model profile)."""
        if self.tracker is None:
            return
        if self._first_epoch is None:
            self._first_epoch = int(epoch)
            self._begin_steps(self._first_epoch)
            if self.profile is not None:
                self._log(self.profile.metrics(), self._first_epoch + self._step_offset)
        self._epoch_start = self.tracker.snapshot()
        self._epoch_validation = _EMPTY
        self._data_wait_s = 0.0

    def add_data_wait(self, seconds: float) -> None:
        """Time the training loop waited for its next batch (hot path: arithmetic only)."""
        self._data_wait_s += seconds

    def begin_phase(self, phase: str) -> None:
        """A measured phase starts (``validation`` inside a fit, ``test`` or ``predict``)."""
        if self.tracker is not None and self.tracker.running:
            self.tracker.begin(phase)

    def end_phase(self, phase: str, *, samples: int | None = None) -> Measurement:
        """A measured phase ends; returns its (local) measurement."""
        if self.tracker is None or not self.tracker.running:
            return _EMPTY
        measurement = self.tracker.end(phase)
        if phase == "validation" and self._epoch_start is not None:
            self._epoch_validation = self._epoch_validation + measurement
        if samples:
            self.samples[phase] = self.samples.get(phase, 0) + int(samples)
        return measurement

    def end_epoch(self, epoch: int, *, logs: Mapping[str, Any] | None = None, train_samples: int | None = None) -> EpochResult:
        """An epoch ends: split it into phases, log running totals at step = epoch, check budgets."""
        if self.tracker is None or self._epoch_start is None:
            return EpochResult(_EMPTY)
        now = self.tracker.snapshot()
        local_epoch = now - self._epoch_start
        epoch_m = self.reduce(local_epoch)
        validation = self.reduce(self._epoch_validation)
        rest = epoch_m - validation
        data_share = min(self._data_wait_s / rest.duration_s, 1.0) if rest.duration_s > 0 else 0.0
        split = {"validation": validation, "data": rest.scaled(data_share), "train": rest.scaled(1.0 - data_share)}
        for phase, measurement in split.items():
            self.phases[phase] = self.phases.get(phase, _EMPTY) + measurement
        if train_samples:
            self.samples["train"] = self.samples.get("train", 0) + int(train_samples)
        self._epochs_done += 1
        self._epoch_energy_j += epoch_m.energy_j
        self._last_epoch_end = now
        self._epoch_start = None
        total = self.carried + self.reduce(now - self.tracker.start_snapshot)
        self._last_total = total
        step = self._step_for(epoch)
        self._update_quality(logs or {})
        metrics = self._running_metrics(total, window=epoch_m)
        metrics.update(self._projection(total))
        self._log(metrics, step)
        self.epochs.append(
            {
                "epoch": int(epoch),
                "step": step,
                "duration_s": epoch_m.duration_s,
                "energy_j": epoch_m.energy_j,
                "phases_j": {phase: m.energy_j for phase, m in split.items()},
                "data_wait_s": self._data_wait_s,
                **({"quality": {self.quality[0]: self.quality[1]}} if self.quality else {}),
            }
        )
        live = {key: metrics[key] for key in (schema.ENERGY_KWH, schema.EMISSIONS_KG, schema.POWER_W) if key in metrics}
        reason = self._budget_reason(total, next_epoch_j=self._epoch_energy_j / self._epochs_done)
        if reason:
            self.stop_reason = reason
        return EpochResult(epoch_m, live, reason)

    def check_budget(self) -> str | None:
        """Mid-epoch budget check on the energy used so far (local to this rank)."""
        if not self.budget.active or self.tracker is None or not self.tracker.running:
            return None
        reason = self._budget_reason(self.carried + self.tracker.elapsed(), next_epoch_j=None)
        if reason:
            self.stop_reason = reason
        return reason

    def end_fit(self, status: str = "FINISHED", *, logs: Mapping[str, Any] | None = None, profile: ModelProfile | None = None) -> Measurement:
        """The fit ends (``FINISHED``, ``FAILED`` or ``KILLED``): log totals, tags and the report."""
        if self.tracker is None:
            return self.carried
        tracker, self.tracker = self.tracker, None
        try:
            local = tracker.stop()
            if self.gather is not None:
                parts = self.gather(local)
                self.rank_totals = [
                    {"rank": rank, "energy_j": part.energy_j, "duration_s": part.duration_s,
                     "devices": [d.to_dict() for d in part.devices]}
                    for rank, part in enumerate(parts)
                ]
                fit_total = parts[0]
                for part in parts[1:]:
                    fit_total = fit_total.merge_parallel(part)
            else:
                fit_total = local
            self.fit_total = fit_total
            total = self.carried + fit_total
            self._update_quality(logs or {})
            step = self.last_step if self.last_step is not None else 0
            metrics = self._running_metrics(total, window=None)
            metrics.update(self._efficiency(total))
            if profile is not None and profile != self.profile:
                self.profile = profile
                metrics.update(profile.metrics())
            self._log(metrics, step)
            self._log_tags(tracker, total)
            if self.log_report and self._recorder is not None and self.is_logging_rank:
                self._recorder.log_report(self._report(tracker, total, status))
            self.carried = total
            for phase, measurement in self.phases.items():
                self.carried_phases[phase] = self.carried_phases.get(phase, _EMPTY) + measurement
            self.phases = {}
            return total
        except Exception as exc:  # measurement never crashes training
            logger.warning("mlflow-green: could not finish measuring the fit: %s", exc)
            return self.carried
        finally:
            self._close_run(status)

    def log_profile(self, profile: ModelProfile) -> None:
        """Log a model profile taken after training (post-training quantization or pruning)."""
        self.profile = profile
        self._log(profile.metrics(), self.last_step if self.last_step is not None else 0)
        if self._recorder is not None and self.is_logging_rank:
            self._recorder.log_tags({schema.TAG_COMPRESSION: profile.compression_tag()})
            if self.tracker is None:  # outside a fit: the caller expects it in MLflow on return
                self._recorder.flush()

    # -- test / predict outside a fit --------------------------------------------------------
    def begin_eval(self, kind: str) -> None:
        """``model.evaluate`` / ``trainer.test`` (``test``) or ``predict`` starts."""
        if self.tracker is not None:  # inside a fit: measured as a phase
            self.begin_phase(kind)
            return
        self._eval_tracker = self._template.fresh()
        self._eval_tracker.start()

    def end_eval(self, kind: str, *, samples: int | None = None) -> Measurement:
        """It ends: log ``green/energy_{kind}_kwh`` (running total) and joules per sample."""
        if self.tracker is not None:
            return self.end_phase(kind, samples=samples)
        tracker = self._eval_tracker
        if tracker is None:
            return _EMPTY
        self._eval_tracker = None
        measurement = self.reduce(tracker.stop())
        self.eval_totals[kind] = self.eval_totals.get(kind, _EMPTY) + measurement
        metrics = {schema.phase_energy_key(kind): joules_to_kwh(self.eval_totals[kind].energy_j)}
        if samples:
            metrics[schema.phase_energy_per_sample_key(kind)] = measurement.energy_j / samples
        if self._recorder is None and self.is_logging_rank:
            self.bind_run()
        self._log(metrics, self.last_step if self.last_step is not None else 0)
        self._close_run("FINISHED")
        return measurement

    # -- resume ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold so that a resumed training continues the totals."""
        if self.tracker is None:
            total = self.carried
        elif self.gather is None:  # exact: up to now
            total = self.carried + self.tracker.elapsed()
        else:  # no collective here (only some ranks save checkpoints): as of the last epoch end
            total = self._last_total if self._last_total is not None else self.carried
        phases = dict(self.carried_phases)
        for phase, measurement in self.phases.items():
            phases[phase] = phases.get(phase, _EMPTY) + measurement
        return {
            "version": STATE_VERSION,
            "run_id": self.run_id,
            "total": total.to_dict(),
            "phases": {phase: m.to_dict() for phase, m in phases.items()},
            "samples": dict(self.samples),
            "last_step": self.last_step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint's :meth:`state_dict`."""
        if not state or state.get("version") != STATE_VERSION:
            logger.warning("mlflow-green: ignoring a checkpoint state of unknown version %r", state.get("version") if state else None)
            return
        self.carried = Measurement.from_dict(state["total"])
        self.carried_phases = {phase: Measurement.from_dict(m) for phase, m in state.get("phases", {}).items()}
        self.samples = {k: int(v) for k, v in state.get("samples", {}).items()}
        self.last_step = state.get("last_step")
        self.resumed_run_id = state.get("run_id")

    # -- internals ---------------------------------------------------------------------------
    def _begin_steps(self, first_epoch: int) -> None:
        """step = epoch; a later fit that restarts at epoch 0 in the same run continues after the last step."""
        self._step_offset = 0
        if self.last_step is not None and first_epoch <= self.last_step:
            self._step_offset = self.last_step + 1 - int(first_epoch)

    def _step_for(self, epoch: int) -> int:
        step = int(epoch) + self._step_offset
        self.last_step = step if self.last_step is None else max(self.last_step, step)
        return step

    def _update_quality(self, logs: Mapping[str, Any]) -> None:
        name = resolve_quality_metric(self.quality_metric, logs)
        if name is None:
            return
        try:
            value = float(logs[name])
        except (TypeError, ValueError):
            return
        if math.isfinite(value):
            self.quality = (name, value)

    def _all_phases(self) -> dict[str, Measurement]:
        phases = dict(self.carried_phases)
        for phase, measurement in self.phases.items():
            phases[phase] = phases.get(phase, _EMPTY) + measurement
        return {p: m for p, m in phases.items() if p in _FIT_PHASES or p in self.samples}

    def _running_metrics(self, total: Measurement, *, window: Measurement | None) -> dict[str, float]:
        cfg = self.config
        metrics = energy_metrics(total, cfg.carbon, cfg.pue, window=window, samples=self.samples.get("train"))
        metrics.update(phase_metrics({p: m for p, m in self._all_phases().items() if p in _FIT_PHASES}))
        if self.quality is not None and total.energy_j > 0:
            metrics[schema.QUALITY] = self.quality[1]
            metrics[schema.ACCURACY_PER_KWH] = self.quality[1] / joules_to_kwh(total.energy_j)
        return metrics

    def _projection(self, total: Measurement) -> dict[str, float]:
        if self._epochs_done < 1:
            return {}
        first = self._first_epoch if self._first_epoch is not None else 0
        remaining = max(self._planned_epochs - first - self._epochs_done, 0)
        projected_j = total.energy_j + self._epoch_energy_j / self._epochs_done * remaining
        return {
            schema.PROJECTED_ENERGY_KWH: joules_to_kwh(projected_j),
            schema.PROJECTED_EMISSIONS_KG: self.config.carbon.emissions_kg(projected_j, self.config.pue),
        }

    def _efficiency(self, total: Measurement) -> dict[str, float]:
        if self.profile is None or not self.profile.flops_per_sample or total.energy_j <= 0:
            return {}
        forward = self.profile.flops_per_sample
        flops = TRAINING_FLOPS_PER_FORWARD * forward * self.samples.get("train", 0)
        flops += forward * self.samples.get("validation", 0)
        return {schema.FLOP_PER_J: flops / total.energy_j} if flops > 0 else {}

    def _budget_reason(self, total: Measurement, *, next_epoch_j: float | None) -> str | None:
        if not self.budget.active:
            return None
        cfg = self.config
        return self.budget.check(
            energy_kwh=joules_to_kwh(total.energy_j),
            emissions_kg=cfg.carbon.emissions_kg(total.energy_j, cfg.pue),
            next_epoch_kwh=joules_to_kwh(next_epoch_j) if next_epoch_j is not None else None,
            next_epoch_kg=cfg.carbon.emissions_kg(next_epoch_j, cfg.pue) if next_epoch_j is not None else None,
        )

    def _log(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue metrics (the recorder's writer sends them in order; training never waits)."""
        if self._recorder is not None and self.is_logging_rank and metrics:
            self._recorder.log_metrics(metrics, step=step)

    def _close_run(self, status: str) -> None:
        """Send (or spool) everything written, then end the run if we started it."""
        if self._recorder is not None:
            self._recorder.close()
        if self.run is not None and self.run.owned:
            self.run.end(status, recorder=self._recorder)

    def _log_tags(self, tracker: EnergyTracker | None = None, total: Measurement | None = None) -> None:
        if self._recorder is None or not self.is_logging_rank:
            return
        tracker = tracker or self.tracker
        if tracker is None:
            return
        cfg = self.config
        tags = run_tags(
            version=__version__,
            meters=tracker.meters_tag(),
            estimated=total.estimated if total is not None else _estimated_so_far(tracker),
            carbon=cfg.carbon,
            pue=cfg.pue,
            cpu=hardware.cpu_model(),
            gpu=measured_gpus(total) if total is not None else None,
            hosts=self.hosts,
            world_size=self.world_size,
        )
        if self.profile is not None:
            tags[schema.TAG_COMPRESSION] = self.profile.compression_tag()
        if self.quality is not None:
            tags[schema.TAG_QUALITY_METRIC] = self.quality[0]
        elif self.quality_metric:
            tags[schema.TAG_QUALITY_METRIC] = self.quality_metric
        if self.stop_reason:
            tags[schema.TAG_BUDGET_STOP] = self.stop_reason
        self._recorder.log_tags(tags)

    def _report(self, tracker: EnergyTracker, total: Measurement, status: str) -> dict[str, Any]:
        phases = self._all_phases()
        phases.update(self.eval_totals)
        return build_report(
            tracker,
            total,
            phases=phases,
            extra={
                "framework": self.framework,
                "status": status,
                "epochs": self.epochs,
                "samples": dict(self.samples),
                "quality": {"metric": self.quality[0], "value": self.quality[1]} if self.quality else None,
                "model": self.profile.to_dict() if self.profile is not None else None,
                "budget": {
                    "max_energy_kwh": self.budget.max_energy_kwh,
                    "max_emissions_kg": self.budget.max_emissions_kg,
                    "stopped": self.stop_reason,
                },
                "distributed": {"world_size": self.world_size, "hosts": self.hosts, "ranks": self.rank_totals},
            },
        )


def _estimated_so_far(tracker: EnergyTracker) -> bool:
    try:
        return tracker.start_snapshot.devices == () or any(
            d.provenance == "estimate" for d in tracker.start_snapshot.devices
        )
    except Exception:
        return True
