"""NVIDIA GPU energy through NVML: the total-energy counter, or sampled power where there is none.

For each GPU visible to this process (``CUDA_VISIBLE_DEVICES``), the meter reads
``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since driver load, Volta and later) at
window boundaries — no thread needed. A GPU without that counter has its power
(``nvmlDeviceGetPowerUsage``) sampled every ``sample_interval_s`` from the tracker's background
thread and integrated with the trapezoidal rule.

A GPU that stops answering mid-run (fell off the bus, driver reset) does not stop the run:
its energy is extrapolated from its last known mean power, marked ``estimate``, with a note.

``CUDA_VISIBLE_DEVICES`` indices are matched to NVML indices, which follow PCI bus order; CUDA
numbers devices that way only with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, so prefer UUIDs on
machines with mixed GPU models. MIG instances (``MIG-...``) are not measured: NVML reports energy
per physical GPU only.

Example:
    >>> from mlflow_green.testing import FakeGPU, FakeNVML, ManualClock
    >>> clock = ManualClock()
    >>> nvml = FakeNVML([FakeGPU("GPU-1", power_w=250.0, has_energy_counter=False)], clock=clock)
    >>> meter = NvmlMeter(nvml=nvml, environ={})
    >>> meter.open(clock())
    >>> clock.advance(2.0)
    >>> counter = meter.read(clock())[0]
    >>> counter.energy_j, counter.provenance
    (500.0, 'sampled')
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlflow_green.errors import ConfigError, MeterError
from mlflow_green.measure import hardware
from mlflow_green.measure.meters.base import Availability, Meter
from mlflow_green.measure.power_integrator import PowerIntegrator
from mlflow_green.measure.readings import Component, DeviceCounter, Provenance

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_INTERVAL_S = 0.1
MISSING_PACKAGE_REASON = "NVML: the nvidia-ml-py package is not installed — pip install 'mlflow-green[nvml]'"
NO_GPU_REASON = "NVML: no NVIDIA GPU visible"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def visible_gpu_indices(uuids: Sequence[str], cuda_visible_devices: str | None) -> list[int]:
    """NVML indices of the GPUs a process sees under ``CUDA_VISIBLE_DEVICES``.

    Like CUDA: unset means every GPU, an empty string none; entries are indices, UUIDs or
    UUID prefixes (with or without ``GPU-``); the list stops at the first entry that matches
    no GPU (or names a MIG instance).

    Example:
        >>> visible_gpu_indices(["GPU-aa", "GPU-bb", "GPU-cc"], "2,GPU-a")
        [2, 0]
        >>> visible_gpu_indices(["GPU-aa"], "")
        []
    """
    if cuda_visible_devices is None:
        return list(range(len(uuids)))
    indices: list[int] = []
    for raw in cuda_visible_devices.split(","):
        token = raw.strip()
        index: int | None = None
        if token.isdigit():
            index = int(token) if int(token) < len(uuids) else None
        elif token and not token.startswith("MIG-"):
            prefixes = (token,) if token.startswith("GPU-") else (token, f"GPU-{token}")
            matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(prefixes)]
            index = matches[0] if len(matches) == 1 else None
        if index is None:
            if token:
                logger.info("NVML: CUDA_VISIBLE_DEVICES entry %r matches no GPU; ignoring it and the rest", token)
            break
        if index not in indices:
            indices.append(index)
    return indices


@dataclass
class _Gpu:
    handle: Any
    uuid: str
    name: str
    has_counter: bool
    start_mj: int = 0
    integrator: PowerIntegrator | None = None
    energy_j: float = 0.0
    last_ok_s: float = 0.0
    power_w: float | None = None
    note: str = ""

    def energy_at(self, now_s: float) -> float:
        if not self.note or self.power_w is None:
            return self.energy_j
        return self.energy_j + self.power_w * max(now_s - self.last_ok_s, 0.0)

    @property
    def provenance(self) -> Provenance:
        if self.note:
            return "estimate"
        return "counter" if self.has_counter else "sampled"


class NvmlMeter(Meter):
    """Energy of each visible NVIDIA GPU, from its energy counter or from sampled power.

    Args:
        nvml: A ``pynvml``-compatible module; None imports ``pynvml`` (package
            ``nvidia-ml-py``) when first needed. Tests pass a
            :class:`~mlflow_green.testing.FakeNVML`.
        environ: Where to read ``CUDA_VISIBLE_DEVICES``; None means ``os.environ``.
        sample_interval_s: Seconds between power samples for GPUs without an energy counter.

    Example:
        >>> from mlflow_green.testing import FakeGPU, FakeNVML, ManualClock
        >>> clock = ManualClock()
        >>> nvml = FakeNVML([FakeGPU("GPU-1", name="NVIDIA H100", power_w=300.0)], clock=clock)
        >>> meter = NvmlMeter(nvml=nvml, environ={})
        >>> meter.is_available().reason
        'NVML: 1 GPU(s): NVIDIA H100 (energy counter)'
        >>> meter.open(clock()); clock.advance(10.0)
        >>> meter.read(clock())[0].energy_j, meter.poll_interval_s
        (3000.0, None)
    """

    name = "nvml"
    priority = 100
    description = "NVIDIA GPUs via NVML: total-energy counter, else sampled power"

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
        self._gpus: list[_Gpu] = []
        self._opened_at_s: float | None = None
        self._initialised = False
        self.sample_interval_s = DEFAULT_SAMPLE_INTERVAL_S
        self.configure(sample_interval_s=sample_interval_s)
        self.poll_interval_s = None

    def configure(self, *, sample_interval_s: float) -> None:
        """Set the power sampling interval (used for GPUs without an energy counter).

        Raises:
            ConfigError: if the interval is not a positive number of seconds.
        """
        if not sample_interval_s > 0:
            raise ConfigError(f"sample_interval_s must be > 0 seconds, got {sample_interval_s!r}")
        self.sample_interval_s = float(sample_interval_s)
        if any(g.integrator is not None for g in self._gpus):
            self.poll_interval_s = self.sample_interval_s

    # -- NVML access -----------------------------------------------------------------------------

    def _module(self) -> Any:
        """The NVML module: the injected one, else ``pynvml`` imported now.

        Raises:
            ImportError: nvidia-ml-py is not installed.
            MeterError: the NVIDIA driver's library cannot be loaded (checked before importing
                pynvml, so machines without a driver never import it).
        """
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

    def _no_gpu_reason(self) -> str:
        value = self._cuda_visible_devices()
        return NO_GPU_REASON if value is None else f"{NO_GPU_REASON} (CUDA_VISIBLE_DEVICES={value!r})"

    def _enumerate(self, nvml: Any) -> list[tuple[Any, str, str]]:
        """(handle, uuid, name) of each visible GPU; nvmlInit must have been called.

        A GPU that cannot even tell its UUID is skipped with a warning: it has no stable id.
        """
        handles: list[Any] = []
        uuids: list[str] = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = hardware.text(nvml.nvmlDeviceGetUUID(handle))
            except Exception as exc:
                logger.warning("NVML: skipping GPU %d, which does not answer (%s)", index, _describe(exc))
                handle, uuid = None, ""
            handles.append(handle)
            uuids.append(uuid)
        found: list[tuple[Any, str, str]] = []
        for index in visible_gpu_indices(uuids, self._cuda_visible_devices()):
            if handles[index] is None:
                continue
            try:
                name = hardware.text(nvml.nvmlDeviceGetName(handles[index]))
            except Exception:
                name = "NVIDIA GPU"
            found.append((handles[index], uuids[index], name))
        return found

    @staticmethod
    def _energy_mj(nvml: Any, handle: Any) -> int | None:
        try:
            return int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except Exception:  # NVMLError_NotSupported before Volta, or a failing device
            return None

    @staticmethod
    def _power_w(nvml: Any, handle: Any) -> float | None:
        try:
            return int(nvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0
        except Exception:
            return None

    # -- Meter API -------------------------------------------------------------------------------

    def is_available(self) -> Availability:
        try:
            nvml = self._module()
        except ImportError:
            return Availability.no(MISSING_PACKAGE_REASON)
        except MeterError as exc:
            return Availability.no(str(exc))
        except Exception as exc:
            return Availability.no(f"NVML: cannot load pynvml ({_describe(exc)})")
        try:
            nvml.nvmlInit()
        except Exception as exc:
            return Availability.no(f"NVML: no NVIDIA driver ({_describe(exc)})")
        try:
            gpus = self._enumerate(nvml)
            if not gpus:
                return Availability.no(self._no_gpu_reason())
            with_counter = [self._energy_mj(nvml, handle) is not None for handle, _, _ in gpus]
            names = ", ".join(name for _, _, name in gpus)
            if all(with_counter):
                how, provenance = "energy counter", "counter"
            elif any(with_counter):
                how, provenance = f"energy counter on {sum(with_counter)}, sampled power on the rest", "sampled"
            else:
                how, provenance = "sampled power, no energy counter", "sampled"
            return Availability.yes(f"NVML: {len(gpus)} GPU(s): {names} ({how})", {"gpu"}, provenance)
        except Exception as exc:
            return Availability.no(f"NVML: cannot list GPUs ({_describe(exc)})")
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
            raise MeterError(f"NVML: no NVIDIA driver ({_describe(exc)})") from exc
        self._initialised = True
        try:
            found = self._enumerate(nvml)
        except Exception as exc:
            self.close()
            raise MeterError(f"NVML: cannot list GPUs ({_describe(exc)})") from exc
        if not found:
            self.close()
            raise MeterError(self._no_gpu_reason())
        gpus = [self._open_gpu(nvml, handle, uuid, name, now_s) for handle, uuid, name in found]
        if all(g.note for g in gpus):
            self.close()
            raise MeterError("; ".join(g.note for g in gpus))
        with self._lock:
            self._gpus = gpus
            self._opened_at_s = now_s
        sampled = any(g.integrator is not None and not g.note for g in gpus)
        self.poll_interval_s = self.sample_interval_s if sampled else None

    def _open_gpu(self, nvml: Any, handle: Any, uuid: str, name: str, now_s: float) -> _Gpu:
        start_mj = self._energy_mj(nvml, handle)
        power_w = self._power_w(nvml, handle)
        gpu = _Gpu(handle, uuid, name, has_counter=start_mj is not None, last_ok_s=now_s, power_w=power_w)
        if start_mj is not None:
            gpu.start_mj = start_mj
        else:
            gpu.integrator = PowerIntegrator()
            if power_w is None:
                gpu.note = f"NVML: GPU {uuid} reports neither an energy counter nor its power; it is left out of the measurement"
                logger.warning(gpu.note)
            else:
                gpu.integrator.add(now_s, power_w)
        return gpu

    def _degrade(self, gpu: _Gpu, now_s: float, exc: BaseException) -> None:
        opened_at_s = self._opened_at_s if self._opened_at_s is not None else now_s
        if gpu.has_counter and gpu.last_ok_s > opened_at_s:
            gpu.power_w = gpu.energy_j / (gpu.last_ok_s - opened_at_s)  # mean power so far
        power = "unknown power (0 W)" if gpu.power_w is None else f"{gpu.power_w:.1f} W, its last known mean power"
        gpu.note = (
            f"NVML: GPU {gpu.uuid} stopped answering after {now_s - opened_at_s:.1f} s ({_describe(exc)}); "
            f"energy extrapolated at {power}"
        )
        logger.warning(gpu.note)

    def _sample(self, gpu: _Gpu, now_s: float) -> None:
        """Refresh one GPU's energy at ``now_s`` (lock held); degrade it if NVML fails."""
        if gpu.note:
            return
        nvml = self._module()
        try:
            if gpu.integrator is None:
                gpu.energy_j = (int(nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle)) - gpu.start_mj) / 1000.0
            else:
                power_w = int(nvml.nvmlDeviceGetPowerUsage(gpu.handle)) / 1000.0
                gpu.integrator.add(now_s, power_w)
                gpu.energy_j = gpu.integrator.energy_j
                gpu.power_w = power_w
        except Exception as exc:  # NVMLError, or anything else a broken device throws
            self._degrade(gpu, now_s, exc)
            return
        gpu.last_ok_s = max(gpu.last_ok_s, now_s)

    def poll(self, now_s: float) -> None:
        """Sample the power of GPUs that have no energy counter."""
        with self._lock:
            for gpu in self._gpus:
                if gpu.integrator is not None:
                    self._sample(gpu, now_s)

    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        with self._lock:
            if self._opened_at_s is None:
                raise MeterError("NVML: read() before open()")
            for gpu in self._gpus:
                self._sample(gpu, now_s)
            if all(g.note and g.power_w is None for g in self._gpus):
                raise MeterError("NVML: no GPU could be read: " + "; ".join(g.note for g in self._gpus))
            return tuple(
                DeviceCounter(
                    device_id=f"gpu:{g.uuid}",
                    component="gpu",
                    energy_j=g.energy_at(now_s),
                    provenance=g.provenance,
                    meter=self.name,
                    label=g.name,
                    note=g.note,
                )
                for g in self._gpus
                if g.has_counter or g.power_w is not None  # unreadable GPUs are left out, never 0 J
            )

    def label(self, component: Component, provenance: Provenance) -> str:
        """``nvml-counter``, ``nvml-sampled`` or ``nvml-estimate``, as in ``gpu:nvml-counter``."""
        return f"{self.name}-{provenance}"

    def close(self) -> None:
        with self._lock:
            self._gpus = []
            self._opened_at_s = None
        if self._initialised:
            self._initialised = False
            try:
                self._module().nvmlShutdown()
            except Exception as exc:
                logger.debug("NVML: nvmlShutdown failed: %s", exc)
