"""``mlflow_green.autolog()``: every training measured, with no other change to its code.

From the call on, every Keras ``Model.fit``, Lightning / ``pytorch_lightning`` ``Trainer.fit`` /
``validate`` / ``test`` and Hugging Face ``Trainer.train`` gets a GreenCallback (with the options
given here) unless it already has one. Frameworks are patched when they are imported, so calling
``autolog()`` imports none of them and a framework that is not installed is simply never patched.
It coexists with ``mlflow.autolog()`` in either order: one run (MLflow's), our ``green/*`` keys
next to MLflow's own. See :mod:`mlflow_green.autologging.frameworks` for where each framework is
hooked.

Example::

    import mlflow, mlflow_green
    mlflow.autolog()              # optional: MLflow's own parameters, metrics and model
    mlflow_green.autolog()        # energy, emissions, compression metadata
    model.fit(x, y, epochs=5)     # unchanged training code
"""

from __future__ import annotations

import inspect
from typing import Any

from mlflow_green.autologging import import_hooks, patches, state
from mlflow_green.autologging.frameworks import HOOKS, forget_callbacks
from mlflow_green.errors import ConfigError

__all__ = ["autolog", "callback_options", "is_enabled"]

_SESSION_DEFAULTS: dict[str, Any] = {
    "quality_metric": None, "max_energy_kwh": None, "max_emissions_kg": None, "live_metrics": None,
    "inspect_model": True, "log_report": True, "run_name": None,
}
_TRACKER_INTERNALS = {"self", "config", "clock", "device_filter", "processes"}


def _tracker_options() -> tuple[str, ...]:
    from mlflow_green.measure.tracker import EnergyTracker

    parameters = inspect.signature(EnergyTracker.__init__).parameters
    return tuple(name for name in parameters if name not in _TRACKER_INTERNALS)


def callback_options() -> tuple[str, ...]:
    """The options ``autolog`` passes to every callback (those every training callback shares)."""
    return (*_SESSION_DEFAULTS, *_tracker_options())


def is_enabled() -> bool:
    """True while autologging is on."""
    return state.is_enabled()


def autolog(*, disable: bool = False, **options: Any) -> None:
    """Measure every Keras, Lightning and Hugging Face training from now on.

    Args:
        disable: Turn autologging off again (trainings already given a callback keep it).
        **options: Passed to every callback: ``quality_metric``, ``max_energy_kwh``,
            ``max_emissions_kg``, ``live_metrics``, ``inspect_model``, ``log_report``, ``run_name``,
            ``region``, ``pue``, ``meters``, ``sample_interval_s``, ``intensity_provider``, ``scope``.

    Raises:
        ConfigError: for an unknown or invalid option, now, before any training.

    Example:
        >>> import mlflow_green
        >>> mlflow_green.autolog(region="FR", max_energy_kwh=0.5)
        >>> mlflow_green.autologging.is_enabled()
        True
        >>> mlflow_green.autolog(disable=True)
        >>> mlflow_green.autologging.is_enabled()
        False
    """
    if disable:
        state.configure(False, {})
        for _, hook in HOOKS.values():
            import_hooks.forget(hook)
        patches.unpatch_all()
        forget_callbacks()
        return
    _validate(options)
    state.configure(True, options)
    forget_callbacks()  # new options apply to the next fit
    for module_name, hook in HOOKS.values():
        import_hooks.when_imported(module_name, hook)


def _validate(options: dict[str, Any]) -> None:
    known = callback_options()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"mlflow_green.autolog() got unknown {'option' if len(unknown) == 1 else 'options'} {', '.join(map(repr, unknown))}. "
            f"Valid options: {', '.join(known)}, disable"
        )
    from mlflow_green.training.callback_options import session_options

    session_options(**{**_SESSION_DEFAULTS, **options})  # ConfigError for a bad value, as a callback would
