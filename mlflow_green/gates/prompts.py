"""Which model versions are prompts (MLflow's prompt registry), by what the registry itself says.

MLflow 3 keeps prompts in the model registry: ``register_prompt`` creates the registered model
with the tag ``mlflow.prompt.is_prompt=true`` and each prompt version with that tag, the
template in ``mlflow.prompt.text`` and a placeholder source (``dummy-source`` or
``prompt-template``, which the server enforces for prompt versions and refuses for model
versions, and which never changes after creation). A prompt version has no source run.

Tags alone prove nothing — any client may set or delete them on an ordinary model or version.
So a version is a prompt only when **all** of these hold: its registered model is tagged a
prompt, the version is tagged a prompt, its source is one of MLflow's prompt placeholders, and
it has no source run. A real model version never has a placeholder source, so tagging it (or its
registered model) a prompt does not switch its gate off. With the server's gates on, client
requests that set or delete the prompt tag on an existing model or version are refused too
(:mod:`mlflow_green.server.protected_tags`).

Example:
    >>> from types import SimpleNamespace as Version
    >>> prompt = Version(source="dummy-source", run_id=None, tags={"mlflow.prompt.is_prompt": "true"})
    >>> is_prompt_version(prompt, {"mlflow.prompt.is_prompt": "true"})
    True
    >>> forged = Version(source="runs:/abc/model", run_id="abc", tags={"mlflow.prompt.is_prompt": "true"})
    >>> looks_like_prompt(forged), is_prompt_version(forged, {"mlflow.prompt.is_prompt": "true"})
    (False, False)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROMPT_TAG = "mlflow.prompt.is_prompt"
"""MLflow's tag on prompt registered models and versions (``mlflow.prompt.constants.IS_PROMPT_TAG_KEY``)."""
PROMPT_SOURCES = frozenset({"dummy-source", "prompt-template"})
"""The placeholder sources of prompt versions (``mlflow.prompt.constants._PROMPT_SOURCE_PLACEHOLDERS``)."""


def _tagged(tags: Mapping[str, str] | None) -> bool:
    return str((tags or {}).get(PROMPT_TAG, "false")).strip().lower() == "true"


def looks_like_prompt(model_version: Any) -> bool:
    """The version's own facts say prompt: placeholder source, no source run, prompt tag.

    Cheap (no registry read); :func:`is_prompt_version` also needs the registered model's tags.
    """
    return (
        getattr(model_version, "source", None) in PROMPT_SOURCES
        and not getattr(model_version, "run_id", None)
        and _tagged(getattr(model_version, "tags", None))
    )


def is_prompt_version(model_version: Any, registered_model_tags: Mapping[str, str] | None) -> bool:
    """Whether a version is a prompt version of a prompt (see the module docstring)."""
    return looks_like_prompt(model_version) and _tagged(registered_model_tags)
