"""Whether MLflow's own autologging is on for a framework (its callback then logs what the framework logs)."""

from __future__ import annotations


def mlflow_autologging_on(*flavors: str) -> bool:
    """True if ``mlflow.<flavor>.autolog()`` (or ``mlflow.autolog()``) is on for any of ``flavors``.

    Example:
        >>> mlflow_autologging_on("keras", "tensorflow") in (True, False)
        True
    """
    try:
        from mlflow.utils.autologging_utils import autologging_is_disabled

        return any(not autologging_is_disabled(flavor) for flavor in flavors)
    except Exception:
        return False
