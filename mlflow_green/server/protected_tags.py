"""Registry tags that only the server may write, while gates are enforced.

Two kinds of tag decide what a gate does, so no client may write them:

* ``green.gate*`` — the gate's verdict on a version (``green.gate``, ``green.gate.reasons``,
  ``green.gate.policy``) and its memory of each alias's last holder
  (``green.gate.holder.alias.<alias>`` on the registered model). The server writes them through
  its own stores, never through these endpoints.
* ``mlflow.prompt.is_prompt`` on an existing registered model or version: MLflow sets it when a
  prompt is created (allowed: creating a registered model or a version with it); setting or
  deleting it afterwards would turn a model into a "prompt" or back.

Refused requests get HTTP 403 ``PERMISSION_DENIED`` naming the tag. Keys are compared after
stripping and lower-casing, so a case-insensitive database collation cannot alias them.

Example:
    >>> protected_key("green.gate"), protected_key(" Green.Gate.Holder.alias.champion"), protected_key("team")
    (True, True, False)
    >>> refusal_reason("_set_model_version_tag", {"name": "m", "version": "1", "key": "mlflow.prompt.is_prompt"})
    "the tag 'mlflow.prompt.is_prompt' is set by MLflow when a prompt is created and cannot be set afterwards while mlflow-green gates are enforced"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlflow_green.gates.prompts import PROMPT_TAG
from mlflow_green.record import schema

TAG_ENDPOINTS = {
    "_set_registered_model_tag": "set",
    "_delete_registered_model_tag": "delete",
    "_set_model_version_tag": "set",
    "_delete_model_version_tag": "delete",
}
"""MLflow's endpoint names (handler functions) that write one tag, under ``/api/`` and ``/ajax-api/``."""
CREATE_ENDPOINTS = ("_create_registered_model", "_create_model_version")
"""Endpoints that create an entity with tags."""


def _normal(key: Any) -> str:
    return key.strip().lower() if isinstance(key, str) else ""


def protected_key(key: Any) -> bool:
    """A ``green.gate*`` key (the gate's own tags)."""
    return _normal(key).startswith(schema.TAG_GATE_PREFIX)


def _gate_tag_refusal(key: str) -> str:
    return (
        f"the tag {key!r} is written by the mlflow-green gate only (it records the gate's verdict or an "
        "alias's last holder); clients cannot set or delete green.gate* tags"
    )


def refusal_reason(endpoint: str, body: Mapping[str, Any]) -> str | None:
    """Why a client request to ``endpoint`` with ``body`` must be refused; None to let it through."""
    action = TAG_ENDPOINTS.get(endpoint)
    if action is not None:
        key = body.get("key")
        if protected_key(key):
            return _gate_tag_refusal(str(key))
        if _normal(key) == PROMPT_TAG:
            verb = "set" if action == "set" else "deleted"
            return (
                f"the tag {PROMPT_TAG!r} is set by MLflow when a prompt is created and cannot be {verb} afterwards "
                "while mlflow-green gates are enforced"
            )
        return None
    if endpoint in CREATE_ENDPOINTS:
        tags = body.get("tags")
        for tag in tags if isinstance(tags, list) else ():
            key = tag.get("key") if isinstance(tag, Mapping) else None
            if protected_key(key):
                return _gate_tag_refusal(str(key))
    return None
