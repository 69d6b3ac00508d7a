"""Energy meters: one small module per energy source, registered through the plugin hook.

- :mod:`~mlflow_green.measure.meters.nvml`: NVIDIA GPUs (energy counter, else sampled power).
- :mod:`~mlflow_green.measure.meters.rapl`: CPU packages and DRAM (Linux powercap RAPL counters).
- :mod:`~mlflow_green.measure.meters.codecarbon_meter`: CodeCarbon's offline tracker, when named.
- :mod:`~mlflow_green.measure.meters.estimate`: CPU and RAM estimated from TDP and utilisation.

Importing this package imports nothing heavy; ``pynvml`` and ``codecarbon`` load only when a
meter is used.
"""
