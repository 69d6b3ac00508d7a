"""``mlflow_green.autolog()``: every training measured, with no other change to its code.

From the call on, every Keras ``Model.fit``, Lightning / ``pytorch_lightning`` ``Trainer.fit`` /
``validate`` / ``test`` / ``predict`` and Hugging Face ``Trainer.train`` gets a GreenCallback (with the options
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

from typing import Any

from mlflow_green.autologging import import_hooks, patches, state
from mlflow_green.autologging.frameworks import HOOKS, forget_callbacks
from mlflow_green.errors import ConfigError

__all__ = ["autolog", "callback_options", "is_enabled"]


def callback_options() -> tuple[str, ...]:
    """The options ``autolog`` passes to every callback (those every training callback shares).

    See :data:`mlflow_green.training.callback_options.CALLBACK_OPTIONS`.
    """
    from mlflow_green.training.callback_options import CALLBACK_OPTIONS

    return CALLBACK_OPTIONS


def is_enabled() -> bool:
    """True while autologging is on."""
    return state.is_enabled()


def autolog(*, disable: bool = False, **options: Any) -> None:
    """Measure every Keras, Lightning and Hugging Face training from now on.

    Args:
        disable: Turn autologging off again (trainings already given a callback keep it).
        **options: Passed to every callback: ``quality_metric``, ``max_energy_kwh``,
            ``max_emissions_kg``, ``live_metrics``, ``inspect_model``, ``log_report``, ``run_name``,
            ``region``, ``pue``, ``meters``, ``sample_interval_s``, ``intensity_provider``, ``scope``
            (``process`` or ``machine``), ``start_timeout_s``, ``end_timeout_s``.

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
    if not isinstance(disable, bool):  # disable="no" must not switch measuring off
        raise ConfigError(f"disable must be True or False, got {disable!r}")
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
    from mlflow_green.training.callback_options import SESSION_DEFAULTS, session_options

    session_options(**{**SESSION_DEFAULTS, **options})  # ConfigError for a bad value, as a callback would
