"""NVIDIA GPU energy through NVML: what this training used, from counters where there are some.

For each device visible to this process (``CUDA_VISIBLE_DEVICES`` parsed as CUDA parses it,
see :mod:`~mlflow_green.measure.meters.cuda_visible`), the meter reads the GPU's total-energy
counter at window boundaries, else samples its power, else estimates utilisation × enforced
power limit (see :mod:`~mlflow_green.measure.meters.nvml_energy`). A MIG slice is billed a fixed
share of its parent GPU's energy (:mod:`~mlflow_green.measure.meters.nvml_inventory`).

Whose energy: with ``scope="process"`` (the default) only the devices on which this training's
process tree holds a context are billed, by its share when others use them too
(:mod:`~mlflow_green.measure.meters.nvml_billing`); ``scope="machine"`` bills every visible
device whole. report.json lists every visible device, billed or not, and why.

Faults are per device: a GPU that stops answering is extrapolated until it answers again, then
reconciled from its counter; the other GPUs are not affected. The background thread runs only
while needed: learning counter update periods at start (a second or two), sampling GPUs without
a counter, and sampling per-process utilisation while a GPU is shared.

Example:
    >>> from mlflow_green.testing import FakeGPU, FakeNVML, ManualClock
    >>> clock = ManualClock()
    >>> nvml = FakeNVML([FakeGPU("GPU-1", name="NVIDIA H100", power_w=300.0)], clock=clock)
    >>> meter = NvmlMeter(nvml=nvml, environ={})
    >>> meter.is_available().reason
    'NVML: 1 device(s): NVIDIA H100 GPU-1 (energy counter)'
    >>> meter.open(clock()); clock.advance(10.0)
    >>> meter.read(clock())[0].energy_j
    3000.0
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from mlflow_green.errors import ConfigError, MeterError
from mlflow_green.measure import hardware
from mlflow_green.measure.attribution import Attribution
from mlflow_green.measure.meters.base import Availability, Meter
from mlflow_green.measure.meters.nvml_billing import TargetBilling, normalise_uuid, observe
from mlflow_green.measure.meters.nvml_energy import PROBE_INTERVAL_S, GpuEnergy
from mlflow_green.measure.meters.nvml_inventory import Target, describe_error, enumerate_gpus, visible_targets
from mlflow_green.measure.readings import Component, DeviceCounter, Provenance, weakest_provenance

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_INTERVAL_S = 0.1
PIDS_TTL_S = 1.0
"""How long the process tree's PIDs are reused before being listed again."""
MISSING_PACKAGE_REASON = "NVML: the nvidia-ml-py package is not installed — pip install 'mlflow-green[nvml]'"
NO_GPU_REASON = "NVML: no NVIDIA GPU visible"
_HOW = {"counter": "energy counter", "sampled": "sampled power", "estimate": "estimated", "none": "unreadable"}


def describe_target(target: Target, mode: str) -> str:
    """One line for doctor: the device and how it is measured."""
    if target.is_mig:
        return f"{target.name} {target.uuid} (MIG slice: {target.fraction_how}, from its {_HOW[mode]})"
    return f"{target.name} {target.uuid} ({_HOW[mode]})"


class NvmlMeter(Meter):
    """Energy of the NVIDIA GPUs (and MIG slices) this training uses.

    Args:
        nvml: A ``pynvml``-compatible module; None imports ``pynvml`` (package
            ``nvidia-ml-py``) when first needed. Tests pass a
            :class:`~mlflow_green.testing.FakeNVML`.
        environ: Where to read ``CUDA_VISIBLE_DEVICES``; None means ``os.environ``.
        sample_interval_s: Seconds between power samples (GPUs without a counter) and
            per-process utilisation samples (shared GPUs).

    Example:
        >>> from mlflow_green.testing import FakeGPU, FakeNVML, ManualClock
        >>> clock = ManualClock()
        >>> nvml = FakeNVML([FakeGPU("GPU-1", power_w=250.0, has_energy_counter=False)], clock=clock)
        >>> meter = NvmlMeter(nvml=nvml, environ={})
        >>> meter.open(clock()); clock.advance(2.0)
        >>> counter = meter.read(clock())[0]
        >>> counter.energy_j, counter.provenance
        (500.0, 'sampled')
    """

    name = "nvml"
    priority = 100
    description = "NVIDIA GPUs via NVML: energy counter, else sampled power, else utilisation x power limit"

    def __init__(
        self,
        nvml: object | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
    ) -> None:
        self._nvml: Any = nvml
        self._environ = environ
        self._lock = threading.Lock()
        self._attribution = Attribution("machine")
        self._explicit_attribution = False
        self._bills: list[TargetBilling] = []
        self._sources: list[GpuEnergy] = []
        self._notes: list[str] = []
        self._faults: list[str] = []
        self._next_sample_s: dict[int, float] = {}
        self._pids: tuple[float, frozenset[int]] = (float("-inf"), frozenset())
        self._opened = False
        self._ours_seen = False
        self._initialised = False
        self.sample_interval_s = DEFAULT_SAMPLE_INTERVAL_S
        self.configure(sample_interval_s=sample_interval_s)

    def configure(self, *, sample_interval_s: float) -> None:
        """Set the sampling interval.

        Raises:
            ConfigError: if the interval is not a positive number of seconds.
        """
        if not sample_interval_s > 0:
            raise ConfigError(f"sample_interval_s must be > 0 seconds, got {sample_interval_s!r}")
        self.sample_interval_s = float(sample_interval_s)

    def attribute(self, attribution: Attribution) -> None:
        self._attribution = attribution
        self._explicit_attribution = True

    @property
    def scope(self) -> str:
        """``process`` or ``machine``; a meter used on its own (no tracker) bills whole devices."""
        return self._attribution.scope

    @property
    def poll_interval_s(self) -> float | None:  # type: ignore[override]
        """The thread's period now: fast while learning update periods, else only while needed."""
        if any(s.probing for s in self._sources):
            return PROBE_INTERVAL_S
        if any(s.needs_sampling for s in self._sources):
            return self.sample_interval_s
        if any(b.billed and b.shared and b.util_supported for b in self._bills):
            return self.sample_interval_s
        return None

    # -- NVML access -----------------------------------------------------------------------------
    def _module(self) -> Any:
        """The NVML module: the injected one, else ``pynvml`` imported now (never without a driver)."""
        if self._nvml is None:
            if importlib.util.find_spec("pynvml") is None:
                raise ImportError(MISSING_PACKAGE_REASON)
            problem = hardware.nvml_library_error()
            if problem is not None:
                raise MeterError(f"NVML: no NVIDIA driver ({problem})")
            import pynvml  # lazy: nvidia-ml-py is an optional extra

            self._nvml = pynvml
        return self._nvml

    def _cuda_visible_devices(self) -> str | None:
        environ = os.environ if self._environ is None else self._environ
        return environ.get("CUDA_VISIBLE_DEVICES")

    def _no_gpu_reason(self, notes: list[str]) -> str:
        value = self._cuda_visible_devices()
        reason = NO_GPU_REASON if value is None else f"{NO_GPU_REASON} (CUDA_VISIBLE_DEVICES={value!r})"
        return "; ".join([reason, *notes])

    def _targets(self, nvml: Any, *, listing: bool = False) -> tuple[list[Target], list[str]]:
        """The visible devices; MIG-mode GPUs as their slices unless billing whole GPUs (machine scope)."""
        gpus, problems = enumerate_gpus(nvml)
        whole = self.scope == "machine" and (self._explicit_attribution or not listing)
        targets, notes = visible_targets(gpus, self._cuda_visible_devices(), whole_gpus=whole)
        return targets, problems + notes

    # -- Meter API -------------------------------------------------------------------------------
    def is_available(self) -> Availability:
        try:
            nvml = self._module()
        except ImportError:
            return Availability.no(MISSING_PACKAGE_REASON)
        except MeterError as exc:
            return Availability.no(str(exc))
        except Exception as exc:
            return Availability.no(f"NVML: cannot load pynvml ({describe_error(exc)})")
        try:
            nvml.nvmlInit()
        except Exception as exc:
            return Availability.no(f"NVML: no NVIDIA driver ({describe_error(exc)})")
        try:
            targets, notes = self._targets(nvml, listing=True)
            if not targets:
                return Availability.no(self._no_gpu_reason(notes))
            modes = [GpuEnergy(nvml, t.gpu.handle, t.gpu.uuid, 0.0).mode for t in targets]
            lines = "; ".join(describe_target(t, m) for t, m in zip(targets, modes))
            readable: list[Provenance] = ["estimate" if m == "none" else m for m in modes]  # type: ignore[misc]
            return Availability.yes(f"NVML: {len(targets)} device(s): {lines}", {"gpu"}, weakest_provenance(readable))
        except Exception as exc:
            return Availability.no(f"NVML: cannot list GPUs ({describe_error(exc)})")
        finally:
            try:
                nvml.nvmlShutdown()
            except Exception:
                pass

    def open(self, now_s: float) -> None:
        try:
            nvml = self._module()
        except ImportError as exc:
            raise MeterError(MISSING_PACKAGE_REASON) from exc
        try:
            nvml.nvmlInit()
        except Exception as exc:
            raise MeterError(f"NVML: no NVIDIA driver ({describe_error(exc)})") from exc
        self._initialised = True
        try:
            targets, notes = self._targets(nvml)
        except Exception as exc:
            self.close()
            raise MeterError(f"NVML: cannot list GPUs ({describe_error(exc)})") from exc
        if not targets:
            self.close()
            raise MeterError(self._no_gpu_reason(notes))
        sources: dict[int, GpuEnergy] = {}
        bills = []
        for target in targets:
            source = sources.get(target.gpu.index)
            if source is None:
                source = sources[target.gpu.index] = GpuEnergy(nvml, target.gpu.handle, target.gpu.uuid, now_s)
            bills.append(TargetBilling(target, source))
        unreadable = [b for b in bills if b.source.mode == "none"]
        for bill in unreadable:
            bill.reason = "answers neither its energy counter, its power, nor its power limit: it cannot be measured"
            self._fault(f"GPU {bill.target.uuid} {bill.reason}")
        if len(unreadable) == len(bills):
            self.close()
            raise MeterError("NVML: " + "; ".join(f"GPU {b.target.uuid} {b.reason}" for b in bills))
        if self.scope == "machine":
            for bill in bills:
                if bill.source.mode != "none":
                    bill.bill_whole(now_s, "scope=machine: every visible device is billed whole")
        with self._lock:
            self._bills, self._sources, self._notes = bills, list(sources.values()), notes
            self._next_sample_s = {id(s): now_s + self.sample_interval_s for s in self._sources}
            self._opened = True

    def _our_pids(self, now_s: float) -> frozenset[int]:
        seen_s, pids = self._pids
        if now_s - seen_s >= PIDS_TTL_S or not pids:
            pids = self._attribution.processes.pids()
            self._pids = (now_s, pids)
        return pids

    def _hinted(self) -> set[str]:
        """Normalised UUIDs of the devices the framework says it uses (asked only when needed)."""
        ask = self._attribution.framework_gpus
        if ask is None:
            return set()
        try:
            return {normalise_uuid(str(u)) for u in ask() if u}
        except Exception as exc:
            logger.debug("NVML: the framework could not say which GPUs it uses: %s", exc)
            return set()

    def poll(self, now_s: float) -> None:
        """From the thread: learn update periods, sample power, sample shares of shared GPUs."""
        with self._lock:
            if not self._opened:
                return
            nvml = self._module()
            updated: set[int] = set()
            for source in self._sources:
                source.probe(now_s)
                shared = any(b.source is source and b.billed and b.shared and b.util_supported for b in self._bills)
                due_s = self._next_sample_s[id(source)]
                if (source.needs_sampling or shared) and now_s >= due_s - 0.5 * self.sample_interval_s:
                    # on a fixed grid: a thread that wakes a little late or early keeps the rate
                    self._next_sample_s[id(source)] = max(due_s + self.sample_interval_s, now_s)
                    source.update(now_s, from_thread=True)
                    updated.add(id(source))
            for bill in self._bills:
                if id(bill.source) in updated:
                    if bill.billed and bill.shared and bill.util_supported:
                        bill.poll_share(nvml, self._our_pids(now_s))
                    bill.step(now_s)

    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        with self._lock:
            if not self._opened:
                raise MeterError("NVML: read() before open()")
            nvml = self._module()
            for source in self._sources:
                source.update(now_s)
            for bill in self._bills:
                bill.step(now_s)
            if self.scope == "process":
                self._observe(nvml, now_s)
            return tuple(self._reading(b, now_s) for b in self._bills if b.billed)

    def _observe(self, nvml: Any, now_s: float) -> None:
        """Who holds a context on each device now; bill the ones this training uses."""
        pids = self._our_pids(now_s)
        seen = {id(b): observe(nvml, b.target.handle, pids) for b in self._bills if b.source.mode != "none"}
        self._ours_seen = self._ours_seen or any(s.ours for s in seen.values())
        fallback = not self._ours_seen  # NVML's PIDs never matched ours (yet): a container?
        hints = self._hinted() if fallback and any(not b.billed for b in self._bills) else set()
        for bill in self._bills:
            if id(bill) in seen:
                hinted = normalise_uuid(bill.target.uuid) in hints
                bill.apply(now_s, seen[id(bill)], nvml, hinted=hinted, fallback=fallback, framework_named=bool(hints))

    def _reading(self, bill: TargetBilling, now_s: float) -> DeviceCounter:
        energy_j, estimated_j = bill.energy_j(now_s)
        source = bill.source
        notes = [source.failing, source.model if source.mode == "estimate" else "", bill.target.fraction_how]
        if bill.bases & {"framework-device", "unattributed", "shared-whole"}:
            notes.append(bill.reason)
        return DeviceCounter(
            device_id=bill.target.device_id,
            component="gpu",
            energy_j=energy_j,
            provenance=source.provenance,
            meter=self.name,
            label=bill.target.name,
            note="; ".join(n for n in notes if n),
            scope=self.scope,  # type: ignore[arg-type]
            share=bill.share_label,
            estimated_j=estimated_j,
        )

    def update_periods_s(self) -> dict[str, float]:
        """The learnt counter update period of each billed device (known after the first second or two)."""
        with self._lock:
            return {
                b.target.device_id: b.source.update_period_s
                for b in self._bills
                if b.source.mode == "counter" and b.source.update_period_s
            }

    def take_faults(self) -> list[str]:
        """Device faults (failures, counter resets) since the last call."""
        with self._lock:
            for source in self._sources:
                self._faults.extend(source.faults)
                source.faults.clear()
            faults, self._faults = self._faults, []
            return faults

    def _fault(self, text: str) -> None:
        logger.warning("NVML: %s", text)
        self._faults.append(text)

    def report(self) -> dict[str, Any]:
        """Every visible device, billed or not and why, how it was measured, for report.json."""
        with self._lock:
            return {
                "scope": self.scope,
                "cuda_visible_devices": self._cuda_visible_devices(),
                "notes": list(self._notes),
                "devices": [
                    {
                        "device_id": b.target.device_id,
                        "name": b.target.name,
                        "billed": b.billed,
                        "reason": b.reason,
                        "share": b.share_label,
                        "fraction_of_gpu": b.target.fraction,
                        **({"fraction_how": b.target.fraction_how} if b.target.fraction_how else {}),
                        "measured_by": b.source.mode,
                        **({"model": b.source.model} if b.source.model else {}),
                        "update_period_s": b.source.update_period_s,
                        "events": list(b.source.events),
                    }
                    for b in self._bills
                ],
            }

    def label(self, component: Component, provenance: Provenance) -> str:
        """``nvml-counter``, ``nvml-sampled`` or ``nvml-estimate``, as in ``gpu:nvml-counter``."""
        return f"{self.name}-{provenance}"

    def close(self) -> None:
        with self._lock:
            self._opened = False
        if self._initialised:
            self._initialised = False
            try:
                self._module().nvmlShutdown()
            except Exception as exc:
                logger.debug("NVML: nvmlShutdown failed: %s", exc)
