"""Training: what the callbacks and ``track()`` drive.

- :mod:`~mlflow_green.training.session`: one measured training (the callbacks' core); its parts:
  :mod:`~mlflow_green.training.session_run` (the run: bind, write, flush, end),
  :mod:`~mlflow_green.training.phases` (train / validation / data split),
  :mod:`~mlflow_green.training.projection`, :mod:`~mlflow_green.training.steps`,
  :mod:`~mlflow_green.training.figures` (metric dicts), :mod:`~mlflow_green.training.quality`,
  :mod:`~mlflow_green.training.evaluation` (test / predict outside a fit),
  :mod:`~mlflow_green.training.fit_summary` (tags, report), :mod:`~mlflow_green.training.state`
  (checkpoints), :mod:`~mlflow_green.training.distributed` (ranks),
  :mod:`~mlflow_green.training.callback_options` (validated options).
- :mod:`~mlflow_green.training.tracked_run`: ``mlflow_green.track()`` for any training code.
- :mod:`~mlflow_green.training.budget`: energy and emissions limits.
- :mod:`~mlflow_green.training.inspection`: model profiles (parameters, sparsity, bits, FLOPs).
- :mod:`~mlflow_green.training.inspectors`: profiling a model with the registered inspectors.
"""
