"""Fakes for testing code that uses mlflow-green, shipped for users' own test suites.

- :class:`FakeMeter`: a meter with a scripted power draw; :func:`registered_meters` registers
  meters as a plugin for a ``with`` block.
- :class:`FakePowercapTree`: a ``/sys/class/powercap`` tree in a temporary folder for
  :class:`~mlflow_green.measure.meters.rapl.RaplMeter` (sockets, DRAM, wraparound, permissions).
- :class:`FakeNVML`: an object with the ``pynvml`` functions
  :class:`~mlflow_green.measure.meters.nvml.NvmlMeter` uses, behaving like real GPUs
  (:class:`FakeGPU`): counters with an update period, running processes (:class:`FakeProcess`)
  and their utilisation, MIG slices (:class:`FakeMIG`), transient errors and counter resets
  (:class:`FakeFault`), power limits and utilisation rates.
- :class:`FakeMachine` / :class:`FakeProcessTree`: scripted CPU times of a machine and of a
  process tree, for process shares (``scope="process"``).
- :class:`FakeIntensityProvider`: a live carbon-intensity provider answering fixed values.
- :class:`PerReadMeter`: energy per counter read, for deterministic budget tests.
- :class:`OutageRelay`: a TCP relay in front of a real tracking server, cut off and restored on
  the same port in milliseconds (an outage without restarting the server).

Submodules that import MLflow (not loaded by this package):
:mod:`mlflow_green.testing.server` (``GreenServer``: a real ``mlflow server --app-name green``)
and :mod:`mlflow_green.testing.registry` (``register_version``: a model version with green
metrics, for testing gate policies).
"""

from __future__ import annotations

from mlflow_green.testing.fake_intensity import FakeIntensityProvider, registered_intensity_providers
from mlflow_green.testing.fake_meter import FakeMeter, PerReadMeter, registered_meters
from mlflow_green.testing.fake_nvml import FakeFault, FakeGPU, FakeMIG, FakeNVML, FakeProcess, ManualClock
from mlflow_green.testing.fake_powercap import FakePowercapTree
from mlflow_green.testing.fake_processes import FakeMachine, FakeProcessTree
from mlflow_green.testing.outage import OutageRelay

__all__ = [
    "FakeFault",
    "FakeGPU",
    "FakeIntensityProvider",
    "FakeMachine",
    "FakeMeter",
    "PerReadMeter",
    "FakeMIG",
    "FakeNVML",
    "FakeProcess",
    "FakePowercapTree",
    "FakeProcessTree",
    "ManualClock",
    "OutageRelay",
    "registered_intensity_providers",
    "registered_meters",
]
