"""The comparison view: the ``/green/`` page, its static files and the ``/green/api/`` JSON API.

Registered on MLflow's Flask app as a blueprint, so it works under every server MLflow runs
(uvicorn, where FastAPI mounts the Flask app; gunicorn; waitress) and under ``--static-prefix``
(read from the environment variable MLflow sets for its workers).

API (every response is JSON; errors are ``{"error": ..., "type": ...}`` with a 4xx status):

- ``GET /green/api/``: name, version and endpoints.
- ``GET /green/api/experiments``: active experiments, most recently updated first.
- ``GET /green/api/rank?experiment_ids=1,2&metric=val_accuracy&measured_only=true&filter=...&by=training``:
  the leaderboard (:meth:`mlflow_green.ranking.Ranking.to_dict`); ``experiment=NAME`` (repeatable)
  takes names or ids instead; ``by=inference`` ranks by quality per joule per prediction.
- ``GET /green/api/metrics?experiment_ids=1,2``: metric keys those runs logged (quality-metric candidates).
- ``GET /green/api/models``: registered models.
- ``GET /green/api/models/<name>/rank?metric=...&measured_only=...&by=...``: a model's versions, ranked.

Example::

    mlflow server --app-name green --backend-store-uri sqlite:///mlflow.db
    curl 'http://127.0.0.1:5000/green/api/rank?experiment_ids=1'
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, request, send_from_directory
from werkzeug.datastructures import MultiDict

from mlflow_green._version import __version__
from mlflow_green.errors import GreenError, NotFoundError, RankRequestError
from mlflow_green.ranking import BY_VALUES, gc_paused, list_experiments, list_metric_keys, list_models, rank_stores
from mlflow_green.ranking.filter_checks import check_filter
from mlflow_green.server.api_checks import database_error, experiment_refs, names

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
BLUEPRINT_NAME = "mlflow_green_view"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
"""No inline script or style, nothing from another origin."""

_MAX_FILTER_CHARS = 4000
_BOOLEANS = {"": False, "0": False, "false": False, "no": False, "1": True, "true": True, "yes": True}

Stores = Callable[[], tuple[Any, Any]]
"""Returns the ``(tracking store, model-registry store)`` to read."""


def static_prefix() -> str:
    """The server's ``--static-prefix`` (``""`` when none), as MLflow passes it to its workers."""
    from mlflow.server.handlers import STATIC_PREFIX_ENV_VAR

    return os.environ.get(STATIC_PREFIX_ENV_VAR, "").rstrip("/")


def register(app: Flask, *, stores: Stores | None = None, prefix: str | None = None) -> None:
    """Add the /green/ view and its JSON API to ``app``.

    Args:
        app: MLflow's Flask app (or any Flask app, in tests).
        stores: Where to read runs and models (default: the MLflow server's own stores).
        prefix: URL prefix (default: the server's ``--static-prefix``).
    """
    prefix = static_prefix() if prefix is None else prefix.rstrip("/")
    app.register_blueprint(blueprint(stores or _server_stores), url_prefix=f"{prefix}/green")


def blueprint(stores: Stores) -> Blueprint:
    """The view's routes, reading from ``stores``."""
    bp = Blueprint(BLUEPRINT_NAME, __name__)
    bp.add_url_rule("/", "index", _index)
    bp.add_url_rule("/static/<path:filename>", "static_file", _static_file)
    bp.add_url_rule("/api/", "api_info", _api_info)
    bp.add_url_rule("/api/experiments", "experiments", lambda: _experiments(stores))
    bp.add_url_rule("/api/rank", "rank", lambda: _rank(stores))
    bp.add_url_rule("/api/metrics", "metrics", lambda: _metrics(stores))
    bp.add_url_rule("/api/models", "models", lambda: _models(stores))
    bp.add_url_rule("/api/models/<path:name>/rank", "model_rank", lambda name: _model_rank(stores, name))
    bp.add_url_rule("/api/<path:rest>", "api_not_found", _api_not_found,
                    methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    bp.after_request(_security_headers)
    return bp


def _server_stores() -> tuple[Any, Any]:
    from mlflow.server.handlers import _get_model_registry_store, _get_tracking_store

    tracking = _get_tracking_store()
    try:
        registry = _get_model_registry_store()
    except Exception as exc:  # a tracking-only backend
        logger.info("mlflow-green: no model registry (%s)", exc)
        registry = None
    return tracking, registry


# --- pages -----------------------------------------------------------------------------------------


def _index() -> Response:
    response = send_from_directory(STATIC_DIR, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


def _static_file(filename: str) -> Response:
    response = send_from_directory(STATIC_DIR, filename, max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


def _security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if response.mimetype == "application/json":
        response.headers["Cache-Control"] = "no-store"
    return response


# --- API ---------------------------------------------------------------------------------------------


def _api_info() -> Response:
    return _json({
        "name": "mlflow-green",
        "version": __version__,
        "endpoints": ["experiments", "rank", "metrics", "models", "models/<name>/rank"],
    })


def _api_not_found(rest: str) -> Response:
    endpoints = "experiments, rank, metrics, models, models/<name>/rank"
    return _error(404, f"No API endpoint {rest!r}. Endpoints: {endpoints}.", "NotFound")


def _experiments(stores: Stores) -> Response:
    return _answer(lambda args: {"experiments": list_experiments(stores()[0])}, allowed=())


def _metrics(stores: Stores) -> Response:
    def run(args: MultiDict[str, str]) -> dict[str, Any]:
        refs = _experiments_asked(args)
        return {"metrics": list_metric_keys(stores()[0], refs)}

    return _answer(run, allowed=("experiment_ids", "experiment"))


def _models(stores: Stores) -> Response:
    def run(args: MultiDict[str, str]) -> dict[str, Any]:
        registry = stores()[1]
        return {"models": [] if registry is None else list_models(registry)}

    return _answer(run, allowed=())


def _rank(stores: Stores) -> Response:
    def run(args: MultiDict[str, str]) -> dict[str, Any]:
        refs = _experiments_asked(args)
        filter_string = _text(args, "filter", _MAX_FILTER_CHARS)
        check_filter(filter_string)
        tracking, registry = stores()
        ranking = rank_stores(
            tracking, registry,
            experiments=refs,
            metric=_metric(args),
            filter_string=filter_string,
            measured_only=_boolean(args, "measured_only"),
            by=_by(args),
        )
        return ranking.to_dict()

    return _answer(run, allowed=("experiment_ids", "experiment", "metric", "measured_only", "filter", "by"))


def _model_rank(stores: Stores, name: str) -> Response:
    def run(args: MultiDict[str, str]) -> dict[str, Any]:
        model = names([name], "model name")[0]
        tracking, registry = stores()
        ranking = rank_stores(tracking, registry, model=model, metric=_metric(args),
                              measured_only=_boolean(args, "measured_only"), by=_by(args))
        return ranking.to_dict()

    return _answer(run, allowed=("metric", "measured_only", "by"))


def _answer(run: Callable[[MultiDict[str, str]], Mapping[str, Any]], *, allowed: Iterable[str]) -> Response:
    """Validate the query, run, time it (``Server-Timing``), and turn errors into JSON 4xx/5xx."""
    from mlflow.exceptions import MlflowException

    started = time.perf_counter()
    try:
        unknown = sorted(set(request.args) - set(allowed))
        if unknown:
            raise RankRequestError(
                f"Unknown query {'parameter' if len(unknown) == 1 else 'parameters'}: {', '.join(unknown)}. "
                f"Allowed: {', '.join(allowed) if allowed else 'none'}."
            )
        with gc_paused():
            body = run(request.args)
    except NotFoundError as exc:
        return _error(404, str(exc), "NotFoundError", kind=exc.kind, name=exc.name, suggestions=exc.suggestions)
    except Exception as exc:  # a JSON answer, never an HTML page, never the database's own words
        if database_error(exc) is not None:
            logger.error("mlflow-green view: the database failed on %s?%s", request.path,
                         request.query_string.decode("utf-8", "replace")[:2000], exc_info=exc)
            return _error(400, "The database could not answer this request: a value in it is one the database cannot "
                          "store or compare. Check the filter and names; the server log has the details.", "DatabaseError")
        if isinstance(exc, GreenError):
            return _error(400, str(exc), type(exc).__name__)
        if isinstance(exc, MlflowException) and exc.get_http_status_code() < 500:
            return _error(exc.get_http_status_code(), exc.message, "MlflowException", error_code=exc.error_code)
        logger.error("mlflow-green view: %s failed", request.path, exc_info=exc)
        return _error(500, "Internal error while answering this request; the server log has the details.",
                      "InternalError")
    computed = time.perf_counter()
    with gc_paused():
        response = _json(body)
    done = time.perf_counter()
    response.headers["Server-Timing"] = (
        f"rank;dur={(computed - started) * 1000:.1f}, json;dur={(done - computed) * 1000:.1f}"
    )
    return response


def _json(body: Any, status: int = 200) -> Response:
    """JSON with ``<``, ``>`` and ``&`` as escapes, so no run name reads as markup even if sniffed."""
    text = json.dumps(body, allow_nan=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Response(text, status=status, mimetype="application/json")


def _error(status: int, message: str, error_type: str, **extra: Any) -> Response:
    return _json({"error": message, "type": error_type, **extra}, status)


def _experiments_asked(args: MultiDict[str, str]) -> list[str]:
    return experiment_refs(args.getlist("experiment_ids"), args.getlist("experiment"))


def _metric(args: MultiDict[str, str]) -> str | None:
    metric = _text(args, "metric", 250)
    if metric is not None and any(ord(c) < 32 for c in metric):
        raise RankRequestError("metric must be a metric key such as val_accuracy.")
    return metric


def _text(args: MultiDict[str, str], key: str, max_chars: int) -> str | None:
    values = args.getlist(key)
    if len(values) > 1:
        raise RankRequestError(f"{key} given {len(values)} times; give it once.")
    value = values[0].strip() if values else ""
    if len(value) > max_chars:
        raise RankRequestError(f"{key} is longer than {max_chars} characters.")
    return value or None


def _by(args: MultiDict[str, str]) -> str:
    """``by``: ``training`` (default) or ``inference``."""
    value = (_text(args, "by", 20) or "training").lower()
    if value not in BY_VALUES:
        raise RankRequestError(f"by must be one of {', '.join(BY_VALUES)}, got {value!r}.")
    return value


def _boolean(args: MultiDict[str, str], key: str) -> bool:
    value = (args.get(key) or "").strip().lower()
    if value not in _BOOLEANS:
        raise RankRequestError(f"{key} must be true or false, got {value!r}.")
    return _BOOLEANS[value]
