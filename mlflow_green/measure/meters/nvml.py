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
    'NVML: 1 device: NVIDIA H100 GPU-1 (energy counter)'
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
from mlflow_green.measure.meters.nvml_devices import OpenGpus
from mlflow_green.measure.meters.nvml_energy import GpuEnergy
from mlflow_green.measure.meters.nvml_inventory import Target, describe_error, enumerate_gpus, visible_targets
from mlflow_green.measure.readings import (
    Component,
    DeviceCounter,
    Provenance,
    join_shares,
    share_label,
    weakest_provenance,
)

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_INTERVAL_S = 0.1
MISSING_PACKAGE_REASON = "NVML: the nvidia-ml-py package is not installed (a dependency of mlflow-green) — pip install nvidia-ml-py"
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
        self._gpus: OpenGpus | None = None
        self._last: OpenGpus | None = None
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
        if getattr(self, "_gpus", None) is not None:
            self._gpus.sample_interval_s = self.sample_interval_s  # type: ignore[union-attr]

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
        gpus = self._gpus
        return gpus.poll_interval_s if gpus is not None else None

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
            from mlflow_green.formatting import plural  # only here: the meter's import stays light

            return Availability.yes(f"NVML: {plural(len(targets), 'device')}: {lines}", {"gpu"}, weakest_provenance(readable))
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
        gpus = OpenGpus.of(nvml, targets, self._attribution, now_s=now_s, sample_interval_s=self.sample_interval_s)
        if not gpus.readable:
            self.close()
            raise MeterError("NVML: " + "; ".join(gpus.take_faults()))
        gpus.notes = notes
        with self._lock:
            self._gpus = self._last = gpus

    def poll(self, now_s: float) -> None:
        """From the thread: learn update periods, sample power, sample shares of shared GPUs."""
        with self._lock:
            if self._gpus is not None:
                self._gpus.poll(now_s)

    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        with self._lock:
            if self._gpus is None:
                raise MeterError("NVML: read() before open()")
            return self._gpus.read(now_s)

    def update_periods_s(self) -> dict[str, float]:
        """The learnt counter update period of each device (known after the first second or two)."""
        with self._lock:
            return self._gpus.update_periods_s() if self._gpus is not None else {}

    def take_faults(self) -> list[str]:
        """Device faults (failures, counter resets) since the last call."""
        with self._lock:
            return self._gpus.take_faults() if self._gpus is not None else []

    def report(self) -> dict[str, Any]:
        """Every visible device, billed or not and why, how it was measured, for report.json."""
        with self._lock:  # still readable after close()
            if self._last is None:
                return {}
            return {"cuda_visible_devices": self._cuda_visible_devices(), **self._last.report()}

    def label(self, component: Component, provenance: Provenance) -> str:
        """``nvml-counter``, ``nvml-sampled`` or ``nvml-estimate``, followed by ``*<share>`` when a
        billed device is apportioned (``nvml-counter*mig``, ``nvml-counter*gpu-utilisation``)."""
        gpus = self._last
        shares = join_shares(*(b.share_label for b in gpus.bills if b.billed)) if gpus is not None else ""
        return share_label(f"{self.name}-{provenance}", shares)

    def close(self) -> None:
        with self._lock:
            self._gpus = None
        if self._initialised:
            self._initialised = False
            try:
                self._module().nvmlShutdown()
            except Exception as exc:
                logger.debug("NVML: nvmlShutdown failed: %s", exc)
