"""The app factory behind the ``mlflow.app`` entry point ``green``.

``mlflow server --app-name green`` imports :func:`create_app`, which adds to MLflow's own Flask
app the comparison view (:mod:`mlflow_green.server.view`) and the registry gates
(:mod:`mlflow_green.server.gate_enforcement`), then wraps it the way MLflow wraps its default
app for the server in use: a FastAPI app under uvicorn (MLflow 3's default), the Flask app
itself under gunicorn or waitress.

Example::

    mlflow server --app-name green --backend-store-uri sqlite:///mlflow.db
    # then open http://127.0.0.1:5000/green/
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

_SGI_ENV = "_MLFLOW_SGI_NAME"


def create_app(app: Flask | None = None) -> Any:
    """MLflow's server app with mlflow-green's view and gates added.

    Args:
        app: The Flask app to extend (default: ``mlflow.server.app``).

    Returns:
        A FastAPI app when MLflow runs under uvicorn, else the Flask app.
    """
    if app is None:
        from mlflow.server import app as mlflow_app

        app = mlflow_app
    extend(app)
    if os.environ.get(_SGI_ENV) == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app


def extend(app: Flask) -> Flask:
    """Add the view and the gates to a Flask app (idempotent)."""
    if app.extensions.get("mlflow_green"):
        return app
    from mlflow_green.server import gate_enforcement, view

    view.register(app)
    gate_enforcement.register(app)
    app.extensions["mlflow_green"] = True
    return app
