"""PyTorch Lightning integration: ``Trainer(callbacks=[GreenCallback()])``.

For ``lightning.pytorch`` (``import lightning``); the same callback for the standalone
``pytorch_lightning`` package is :mod:`mlflow_green.integrations.pytorch_lightning` (Lightning
accepts only callbacks derived from its own package's ``Callback``).

Per epoch (``step`` = epoch): running totals ``green/energy_kwh`` (and per component),
``green/power_w``, ``green/emissions_kg``, ``green/duration_s``, ``green/energy_per_sample_j``; the
phase split ``green/energy_{train,validation,data,other}_kwh`` (data = time spent fetching batches;
the four add up to the total);
``green/projected_*`` after the first epoch; ``green/accuracy_per_kwh`` from
``trainer.callback_metrics``. At the end: totals, ``green/flop_per_j``, ``green/model_*``, the
``green.*`` tags and ``green/report.json`` (the final totals replace the last epoch's at its step:
one point per step). ``trainer.test`` / ``trainer.validate`` / ``trainer.predict`` log
``green/energy_{test,validate,predict}_kwh`` and joules per sample (alone: a complete run).

Runs: Lightning's ``MLFlowLogger`` run (and its tracking URI) if the Trainer has one, else the
active MLflow run (e.g. ``mlflow.pytorch.autolog()``'s), else a new run ended with the fit
(``FAILED`` if the fit raised, ``KILLED`` on Ctrl-C or SIGTERM, with the energy so far). In
distributed training each rank measures only its own devices (its GPU by UUID; CPU and RAM once
per host), totals and samples are gathered, and only rank zero logs; the callback pickles
(``ddp_spawn``). ``state_dict`` / ``load_state_dict`` carry the totals through checkpoints: a
resumed training continues them in the same run, starts at zero in a new one (tagged
``green.resumed_from``).

Example::

    import lightning
    from mlflow_green.integrations.lightning import GreenCallback

    trainer = lightning.Trainer(max_epochs=5, callbacks=[GreenCallback()])
    trainer.fit(model, train_loader, val_loader)

Options (validated at construction, ``ConfigError``): ``quality_metric`` (default
``val_accuracy``/``val_acc``, then another ``val_*acc*``, then ``accuracy``), ``max_energy_kwh``,
``max_emissions_kg`` (stop via ``trainer.should_stop``, reason tagged ``green.budget_stop``),
``live_metrics`` (progress bar; default on unless PyTorch autologging is on),
``inspect_model``, ``log_report``, ``run_name``, the tracker's ``region``, ``pue``,
``meters``, ``sample_interval_s``, ``intensity_provider``, ``scope`` (``process``, the default, else
``MLFLOW_GREEN_SCOPE``; ``machine`` bills whole devices), and the bounds on waiting for MLflow
``start_timeout_s`` / ``end_timeout_s`` (default 2 s / 30 s, ``MLFLOW_GREEN_START_TIMEOUT_S`` /
``MLFLOW_GREEN_END_TIMEOUT_S``; see docs/reliability.md).
"""

from __future__ import annotations

from mlflow_green.errors import MissingExtraError

try:
    import lightning.pytorch as _pl
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise MissingExtraError("lightning", "lightning", "mlflow_green.integrations.lightning") from exc

from mlflow_green.integrations._lightning_impl import GreenCallbackMixin, make_callback_class

GreenCallback = make_callback_class(_pl.Callback, __name__)

__all__ = ["GreenCallback", "GreenCallbackMixin"]
