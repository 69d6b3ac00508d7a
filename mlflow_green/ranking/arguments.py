"""Argument types of :func:`mlflow_green.rank` and :func:`mlflow_green.ranking.rank_client`, checked first.

A wrong type raises :class:`~mlflow_green.errors.ArgumentTypeError` naming the argument, never a
bare ``TypeError`` or ``AttributeError`` from deep inside.

Example:
    >>> check_rank_arguments(experiments=5.5)
    Traceback (most recent call last):
    ...
    mlflow_green.errors.ArgumentTypeError: experiments must be an experiment name or id (str or int), or a list of them, got 5.5 (float)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlflow_green.errors import ArgumentTypeError

_MISSING = object()


def _name(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def check_rank_arguments(
    *,
    experiments: Any = None,
    model: Any = None,
    metric: Any = None,
    filter_string: Any = None,
    measured_only: Any = False,
    tracking_uri: Any = None,
    registry_uri: Any = None,
    client: Any = _MISSING,
) -> None:
    """Raise :class:`ArgumentTypeError` for the first argument of the wrong type."""
    listed = isinstance(experiments, Sequence) and not isinstance(experiments, (str, bytes))
    if experiments is not None and not _name(experiments) and not (listed and all(_name(e) for e in experiments)):
        raise ArgumentTypeError("experiments", "an experiment name or id (str or int), or a list of them", experiments)
    for argument, value in (("model", model), ("metric", metric), ("filter_string", filter_string),
                            ("tracking_uri", tracking_uri), ("registry_uri", registry_uri)):
        if value is not None and not isinstance(value, str):
            raise ArgumentTypeError(argument, "a string or None", value)
    if not isinstance(measured_only, bool):
        raise ArgumentTypeError("measured_only", "True or False", measured_only)
    if client is not _MISSING and not all(hasattr(client, m) for m in ("search_runs", "get_experiment_by_name")):
        raise ArgumentTypeError("client", "an mlflow.MlflowClient", client)
