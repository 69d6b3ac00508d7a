"""Measure: joules with provenance and scope.

- :mod:`~mlflow_green.measure.readings`: frozen readings in J, W, s (counters, windows, measurements).
- :mod:`~mlflow_green.measure.meters`: one module per energy source (NVML, RAPL, CodeCarbon, estimate).
- :mod:`~mlflow_green.measure.selection`: one meter per component, by explicit priority.
- :mod:`~mlflow_green.measure.sampler`: the one background thread, for meters without a counter.
- :mod:`~mlflow_green.measure.power_integrator`: sampled power to energy.
- :mod:`~mlflow_green.measure.hardware`: what this host has (CPU, TDP, RAM, GPUs).
- :mod:`~mlflow_green.measure.tracker`: :class:`~mlflow_green.measure.tracker.EnergyTracker`, windows and failover.
"""
