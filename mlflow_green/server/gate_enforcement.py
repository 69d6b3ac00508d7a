"""Server-side registry gates: alias and stage requests are checked before MLflow applies them.

With ``MLFLOW_GREEN_GATE_POLICY=/path/green-policy.toml`` in the environment of
``mlflow server --app-name green``, the policy is loaded and validated when the app starts (a
malformed policy stops the server with an error naming the key) and kept for the server's life.
A Flask ``before_request`` hook on MLflow's app then intercepts

* ``POST <prefix>/api/2.0/mlflow/registered-models/alias`` and its ``/ajax-api/`` twin (the UI),
  i.e. ``MlflowClient.set_registered_model_alias``, and
* ``POST <prefix>/api/2.0/mlflow/model-versions/transition-stage`` and its ``/ajax-api/`` twin,
  i.e. ``MlflowClient.transition_model_version_stage``,

matched by MLflow's own endpoint names, so every ``--static-prefix`` is covered. When the policy
covers the alias (or stage), the version is checked against the server's stores directly (reads
only), and a failing request is refused with **HTTP 403** and MLflow's error body, so
``MlflowClient`` raises ``MlflowException`` with the message::

    {"error_code": "PERMISSION_DENIED",
     "message": "mlflow-green gate refused ...: max_energy_kwh: 0.8 kWh > limit 0.5 kWh",
     "gate": {"passed": false, "failed_rules": ["max_energy_kwh"], "rules": [...], ...}}

The ``green.gate``, ``green.gate.reasons`` and ``green.gate.policy`` tags are written on the
version by a background thread once MLflow has handled the request, off the request path (each
sqlite write costs 10-30 ms here; three of them would blow the 50 ms budget), in the request's
context (its workspace); after a promotion, so is the alias's holder memory on the registered
model (:mod:`mlflow_green.gates.holders`). Aliases and stages the policy does not cover, prompt
versions (by what the registry says: :mod:`mlflow_green.gates.prompts`), and malformed requests
(which MLflow itself rejects) pass through untouched. If the check itself cannot run, the
request is refused (gates fail closed). Client writes of the tags the gate relies on
(``green.gate*``, the prompt flag on existing models and versions) are refused with 403
(:mod:`mlflow_green.server.protected_tags`).

Example::

    MLFLOW_GREEN_GATE_POLICY=green-policy.toml mlflow server --app-name green
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, request

from mlflow_green.formatting import plural
from mlflow_green.gates.check import check_version, remember_holder, require_trusted_keys
from mlflow_green.gates.policy import ENV_GATE_POLICY, Policy, load_policy
from mlflow_green.gates.registry import Registry, StoreRegistry
from mlflow_green.gates.result import GateResult
from mlflow_green.record.signing import TrustedKeys
from mlflow_green.server.protected_tags import CREATE_ENDPOINTS, TAG_ENDPOINTS, refusal_reason
from mlflow_green.server.tag_writer import DeferredTagRegistry, TagWriter

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

REFUSED_STATUS = 403
"""HTTP status of a refused alias or stage request (MLflow's ``PERMISSION_DENIED``)."""

GATE_HEADER = "X-MLflow-Green-Gate"
"""Response header on a checked request: ``passed``, ``failed``, ``skipped (prompt)`` or ``error``."""
GATE_MS_HEADER = "X-MLflow-Green-Gate-Ms"
"""Response header on a checked request: milliseconds the check took inside the server."""


@dataclass(frozen=True)
class _Gated:
    """An MLflow endpoint the gates intercept, and the request field naming the target."""

    kind: str  # "alias" or "stage"
    field: str


_GATED_ENDPOINTS = {
    "_set_registered_model_alias": _Gated("alias", "alias"),
    "_transition_stage": _Gated("stage", "stage"),
}
"""MLflow's Flask endpoint names (its handler functions) for ``POST .../registered-models/alias``
and ``POST .../model-versions/transition-stage``, under both ``/api/`` and ``/ajax-api/``."""


class GateEnforcer:
    """The ``before_request`` hook that checks alias and stage requests against a policy.

    Args:
        policy: The validated policy to enforce.
        registry_factory: Builds the :class:`~mlflow_green.gates.registry.Registry` to read and
            write (default: the server's own tracking and model-registry stores).

    Example::

        enforcer = GateEnforcer(load_policy("green-policy.toml"))
        app.before_request(enforcer.before_request)
        app.after_request(enforcer.after_request)
    """

    def __init__(
        self,
        policy: Policy,
        registry_factory: Callable[[], Registry] | None = None,
        *,
        trusted_keys: TrustedKeys | None = None,
    ) -> None:
        self.policy = policy
        self.registry_factory = registry_factory or _server_registry
        self.trusted_keys = trusted_keys
        self.tag_writer = TagWriter()

    def before_request(self) -> Response | None:
        """Return a refusal for a failing alias/stage request or a write of a protected tag;
        None lets the request through."""
        endpoint = request.endpoint or ""
        if endpoint in TAG_ENDPOINTS or endpoint in CREATE_ENDPOINTS:
            return _refuse_protected_tag(endpoint, _request_fields())
        gated = _GATED_ENDPOINTS.get(endpoint)
        if gated is None or request.method != "POST":
            return None
        body = _request_fields()
        name, version, target = body.get("name"), body.get("version"), body.get(gated.field)
        if not isinstance(name, str) or not isinstance(target, str) or not isinstance(version, str):
            return None  # malformed: MLflow's handler rejects it with its own error
        if not (self.policy.covers(alias=target) if gated.kind == "alias" else self.policy.covers(stage=target)):
            return None
        started = time.perf_counter()
        try:
            registry = DeferredTagRegistry(self.registry_factory())
            g.mlflow_green_gate_writes = registry.pending
            alias, stage = (target, None) if gated.kind == "alias" else (None, target)
            result = check_version(registry, name, version, self.policy, alias=alias, stage=stage,
                                   trusted_keys=self.trusted_keys)
        except Exception as exc:  # noqa: BLE001 - any failure to check refuses (fail closed)
            return _check_error(exc, name, version, gated.kind, target)
        finally:
            g.mlflow_green_gate_ms = (time.perf_counter() - started) * 1000.0
        if result.prompt:  # MLflow's prompt registry shares the alias endpoint: prompts are not gated
            g.mlflow_green_gate = "skipped (prompt)"
            return None
        g.mlflow_green_gate = result.status
        if result.passed:
            logger.info("mlflow-green gate passed: %s", result.summary())
            g.mlflow_green_gate_holder = (registry, result)
            return None
        logger.warning("mlflow-green gate refused: %s", result.summary())
        return refusal(result)

    def after_request(self, response: Response) -> Response:
        """Queue the gate tags for writing; say on the response what the gate decided and how long it took.

        Headers ``X-MLflow-Green-Gate`` (``passed``/``failed``/``error``) and
        ``X-MLflow-Green-Gate-Ms`` (server-side time of the check, for the latency benchmark).
        """
        for write in g.pop("mlflow_green_gate_writes", ()):
            self.tag_writer.submit(write)
        promoted = g.pop("mlflow_green_gate_holder", None)
        if promoted is not None and response.status_code == 200:  # MLflow applied it: remember the holder
            registry, result = promoted
            self.tag_writer.submit(lambda: remember_holder(registry.registry, result))
        elapsed_ms = g.get("mlflow_green_gate_ms")
        if elapsed_ms is not None:
            response.headers[GATE_HEADER] = g.get("mlflow_green_gate", "error")
            response.headers[GATE_MS_HEADER] = f"{elapsed_ms:.3f}"
        return response


def refusal(result: GateResult) -> Response:
    """The HTTP 403 response, in MLflow's error format, for a failed check."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

    action = f"setting alias {result.alias!r}" if result.alias is not None else f"transition to stage {result.stage!r}"
    message = (
        f"mlflow-green gate refused {action} for model {result.model!r} version {result.version} "
        f"(policy {result.policy}): {result.reasons}"
    )
    body = json.loads(MlflowException(message, error_code=PERMISSION_DENIED).serialize_as_json())
    body["gate"] = result.to_dict()
    return Response(json.dumps(body), status=REFUSED_STATUS, mimetype="application/json")


def register(app: Flask, environ: Mapping[str, str] | None = None) -> GateEnforcer | None:
    """Check alias and stage requests against the configured policy before they apply.

    Reads ``MLFLOW_GREEN_GATE_POLICY``; without it the server enforces nothing.

    Args:
        app: MLflow's Flask app.
        environ: Environment to read (default: ``os.environ``).

    Returns:
        The installed enforcer, or None when no policy is configured.

    Raises:
        PolicyError: The policy file is missing or malformed (the server does not start).
    """
    environ = os.environ if environ is None else environ
    path = environ.get(ENV_GATE_POLICY, "").strip()
    if not path:
        logger.info("mlflow-green: %s is not set; registry gates are off", ENV_GATE_POLICY)
        return None
    policy = load_policy(path)
    trusted_keys = None
    signed_sections = [rules.section for rules in policy.sections() if rules.require_signed]
    if signed_sections:
        trusted_keys = require_trusted_keys(TrustedKeys.from_env(environ), signed_sections[0])
        logger.info("mlflow-green: trusting %s: %s", plural(len(trusted_keys), "signing key"), ", ".join(trusted_keys.ids))
    enforcer = GateEnforcer(policy, trusted_keys=trusted_keys)
    app.before_request(enforcer.before_request)
    app.after_request(enforcer.after_request)
    app.extensions["mlflow_green_gates"] = enforcer
    atexit.register(enforcer.tag_writer.flush, 5.0)
    covered = [f"alias {a}" for a in policy.aliases] + [f"stage {s}" for s in policy.stages]
    logger.info(
        "mlflow-green: enforcing gate policy %s (sha256:%s) on %s",
        policy.source,
        policy.digest[:12],
        ", ".join(covered) or "nothing (no [aliases] or [stages] tables)",
    )
    return enforcer


def _server_registry() -> StoreRegistry:
    from mlflow.server import handlers

    return StoreRegistry(handlers._get_tracking_store(), handlers._get_model_registry_store())


def _refuse_protected_tag(endpoint: str, body: Mapping[str, Any]) -> Response | None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

    reason = refusal_reason(endpoint, body)
    if reason is None:
        return None
    logger.warning("mlflow-green refused a protected tag write (%s): %s", endpoint, reason)
    message = f"mlflow-green refused the request: {reason}"
    return Response(MlflowException(message, error_code=PERMISSION_DENIED).serialize_as_json(),
                    status=REFUSED_STATUS, mimetype="application/json")


def _request_fields() -> dict[str, Any]:
    # The same parse as MLflow's handlers (query args for a GET with args; else the JSON body,
    # forced, silent, double-encoded strings decoded), so the gate sees the fields MLflow applies.
    if request.method == "GET" and request.args:
        return {key: request.args.get(key) for key in request.args}
    body = request.get_json(force=True, silent=True)
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return {}
    return body if isinstance(body, dict) else {}


def _check_error(exc: Exception, name: str, version: Any, kind: str, target: str) -> Response:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

    if isinstance(exc, MlflowException) and exc.get_http_status_code() < 500:
        # e.g. the model or version does not exist: MLflow's own answer, as its handler would give
        return Response(exc.serialize_as_json(), status=exc.get_http_status_code(), mimetype="application/json")
    logger.exception("mlflow-green gate could not check %s version %s for %s %s", name, version, kind, target)
    message = (
        f"mlflow-green gate could not check model {name!r} version {version} for {kind} {target!r}, "
        f"so the request is refused: {type(exc).__name__}: {exc}"
    )
    return Response(
        MlflowException(message, error_code=PERMISSION_DENIED).serialize_as_json(),
        status=REFUSED_STATUS,
        mimetype="application/json",
    )
