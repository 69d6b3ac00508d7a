"""Training: what the callbacks and ``track()`` drive.

- :mod:`~mlflow_green.training.session`: one measured training (epochs, phases, projection, budgets).
- :mod:`~mlflow_green.training.tracked_run`: ``mlflow_green.track()`` for any training code.
- :mod:`~mlflow_green.training.budget`: energy and emissions limits.
- :mod:`~mlflow_green.training.inspection`: model profiles (parameters, sparsity, bits, FLOPs).
- :mod:`~mlflow_green.training.inspectors`: profiling a model with the registered inspectors.
"""
