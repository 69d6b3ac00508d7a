"""The Hugging Face callback's totals in a Trainer checkpoint, so that a resumed training continues them.

The Trainer saves, in each checkpoint's ``trainer_state.json`` (``stateful_callbacks``), the
``state()`` of every callback that is an ``ExportableState``: for the GreenCallback,
``{"args": <its JSON-able options>, "attributes": {"green_checkpoint": <session state_dict>}}``.
``trainer.train(resume_from_checkpoint=...)`` loads that file back as ``TrainerState``; the
callback finds its entry there at ``on_train_begin`` (a resumed training is the only one that
starts with ``global_step > 0``) and continues the totals: in the same run, or from zero in a new
run tagged ``green.resumed_from`` (:meth:`~mlflow_green.training.session.TrainingSession.bind_run`).
With ``restore_callback_states_from_checkpoint=True`` the Trainer instead builds a new callback
from ``args`` and sets ``green_checkpoint`` on it — the same state, applied the same way.

Example:
    >>> json_options({"region": "FR", "meters": [object()], "pue": None})
    {'region': 'FR'}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from mlflow_green.training.session import TrainingSession

logger = logging.getLogger(__name__)

STATE_ATTRIBUTE = "green_checkpoint"
"""The attribute under which the session's checkpoint state travels in ``trainer_state.json``."""


class CheckpointMixin:
    """The callback's part in a checkpoint (transformers' ``ExportableState`` protocol)."""

    session: TrainingSession
    _options: dict[str, Any]  # the options the callback was built with

    def state(self) -> dict[str, Any]:
        """What a checkpoint's ``trainer_state.json`` keeps of this callback (see the module docstring)."""
        try:
            return exported_state(self._options, self.session.state_dict())
        except Exception as exc:  # never break the Trainer's checkpoint
            logger.warning("mlflow-green: the energy totals are not saved in this checkpoint: %s", exc)
            return {"args": {}, "attributes": {}}

    @property
    def green_checkpoint(self) -> dict[str, Any]:
        """The session's checkpoint state (set by the Trainer's ``restore_callback_states_from_checkpoint``)."""
        return self.session.state_dict()

    @green_checkpoint.setter
    def green_checkpoint(self, state: Mapping[str, Any]) -> None:
        self.session.load_state_dict(state)


def json_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that are set and can be written as JSON (meter *instances* cannot: left out)."""
    kept: dict[str, Any] = {}
    for name, value in options.items():
        if value is None:
            continue
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            logger.debug("mlflow-green: option %s is not saved in checkpoints (not JSON)", name)
            continue
        kept[name] = value
    return kept


def exported_state(options: Mapping[str, Any], session_state: Mapping[str, Any]) -> dict[str, Any]:
    """What ``GreenCallback.state()`` gives the Trainer (see the module docstring)."""
    return {"args": json_options(options), "attributes": {STATE_ATTRIBUTE: dict(session_state)}}


def resumed_state(trainer_state: Any, callback_name: str) -> Mapping[str, Any] | None:
    """The session state a resumed training's ``TrainerState`` holds for this callback, else None.

    Only a training resumed from a checkpoint starts with ``global_step > 0``; a fresh
    ``TrainerState`` holds the callback's own current state, which must not be loaded back.
    """
    if not int(getattr(trainer_state, "global_step", 0) or 0):
        return None
    saved = (getattr(trainer_state, "stateful_callbacks", None) or {}).get(callback_name)
    if isinstance(saved, list):  # several callbacks of one class: the first is ours
        saved = saved[0] if saved else None
    if not isinstance(saved, Mapping):
        return None
    state = (saved.get("attributes") or {}).get(STATE_ATTRIBUTE)
    return state if isinstance(state, Mapping) and state else None


def register(trainer_state: Any, callback_name: str, exported: Mapping[str, Any]) -> None:
    """Make sure the Trainer has a slot for this callback's state.

    A callback added after the ``TrainerState`` was built (``mlflow_green.autolog()`` adds it at
    ``on_train_begin``) has none, and the Trainer's checkpoint saving would fail on the missing key.
    """
    slots = getattr(trainer_state, "stateful_callbacks", None)
    if isinstance(slots, dict) and callback_name not in slots:
        slots[callback_name] = dict(exported)
