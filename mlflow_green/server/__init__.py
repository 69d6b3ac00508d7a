"""The ``green`` MLflow app: ``mlflow server --app-name green``.

The normal MLflow server plus the comparison view under ``/green/`` (and its JSON API under
``/green/api/``) and server-side model-registry energy gates. Imported only by the server.
"""
