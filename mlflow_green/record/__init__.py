"""Record: everything mlflow-green writes into MLflow, and the one module that names every key.

- :mod:`~mlflow_green.record.schema`: every metric, tag and artifact name.
- :mod:`~mlflow_green.record.metrics`: measurements to ``green/`` metrics and ``green.`` tags.
- :mod:`~mlflow_green.record.report`: ``green/report.json``.
- :mod:`~mlflow_green.record.recorder`: asynchronous, never-blocking writes into one run.
- :mod:`~mlflow_green.record.spool`: the crash-safe write-ahead log behind the recorder.
- :mod:`~mlflow_green.record.runs`: which run a measurement goes into.
- :mod:`~mlflow_green.record.run_context`: MLflow's run-context provider (hardware tags on every run).
"""
