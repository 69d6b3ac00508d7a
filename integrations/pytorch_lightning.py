"""The Lightning callback for the standalone ``pytorch_lightning`` package.

Same behaviour and options as :mod:`mlflow_green.integrations.lightning`.

Example::

    import pytorch_lightning as pl
    from mlflow_green.integrations.pytorch_lightning import GreenCallback

    trainer = pl.Trainer(max_epochs=5, callbacks=[GreenCallback()])
"""

from __future__ import annotations

from mlflow_green.errors import MissingExtraError

try:
    import pytorch_lightning as _pl
except ImportError as exc:  # pragma: no cover - exercised without the package installed
    raise MissingExtraError("pytorch_lightning", "lightning", "mlflow_green.integrations.pytorch_lightning") from exc

from mlflow_green.integrations._lightning_impl import GreenCallbackMixin, make_callback_class

GreenCallback = make_callback_class(_pl.Callback, __name__)

__all__ = ["GreenCallback", "GreenCallbackMixin"]
