"""The Lightning callback's model profiles: on the fit's example input, at its start (or first batch) and end,
and on demand (``log_model``) after post-training compression.

The example input is the LightningModule's ``example_input_array``, else one sample of the first training batch
(the first loader's of a ``CombinedLoader``), taken as that batch starts — or, for a ``training_step`` that reads a
``dataloader_iter`` (Lightning hands the batch start ``None``), as it ends.
"""

from __future__ import annotations

import logging
from typing import Any

from mlflow_green.integrations._torch_batches import example_of
from mlflow_green.training.inspection import ModelProfile
from mlflow_green.training.inspectors import inspect_model, require_inspectable

logger = logging.getLogger(__name__)


class ProfileMixin:
    """The profile methods of the Lightning GreenCallback (its ``session``, ``_example``, ``_profiled`` …)."""

    session: Any
    _example: Any
    _flop_cache: dict[str, Any]
    _needs_profile: bool
    _profiled: Any

    def log_model(self, model: Any, *, example_input: Any = None, precision: str | None = None) -> ModelProfile | None:
        """Inspect ``model`` again and log its compression metadata into the run of the last fit.

        For compression applied after ``fit`` (e.g. ``torch.ao.quantization.quantize_dynamic``
        or one-shot pruning): the changed ``green/model_*`` values are logged at the step after
        the last one, ``green.compression`` and ``green/report.json`` are updated.
        """
        require_inspectable(model, "a torch.nn.Module (the LightningModule, or a quantized or pruned copy of it)")
        example = example_input if example_input is not None else getattr(model, "example_input_array", None)
        if example is None:  # the fit's (a quantized copy takes the same input; another that does not: FLOPs noted unknown)
            example = self._example
        context: dict[str, Any] = {"precision": precision}
        if example is not None:
            context["example_input"] = example
        profile = inspect_model(model, **context)
        if profile is not None:
            self.session.log_profile(profile)
        return profile

    def _profile_first_batch(self, trainer: Any, pl_module: Any, batch: Any) -> None:
        """Profile the model on one sample of the fit's first training batch, kept for the end-of-fit profile."""
        self._needs_profile = False
        try:
            self._example = example_of(pl_module.forward, self._profiled(batch))
        except Exception as exc:
            logger.debug("mlflow-green: no example input from the first batch: %s", exc)
        self._log_profile(trainer, pl_module)

    def _inspect(self, trainer: Any, pl_module: Any) -> ModelProfile | None:
        """Profile the model on the fit's example input (its ``example_input_array`` or one sample of the first batch)."""
        precision = str(getattr(trainer, "precision", "") or "") or None
        context: dict[str, Any] = {"precision": precision}
        if self._example is not None:
            context["example_input"] = self._example
            context["flop_cache"] = self._flop_cache  # the end-of-fit profile skips the FLOP pass if nothing changed
        try:
            return inspect_model(pl_module, **context)
        except Exception as exc:  # measurement never crashes training
            logger.warning("mlflow-green: could not inspect the model: %s", exc)
            return None

    def _profile_if_never(self, trainer: Any, pl_module: Any) -> None:
        """A fit ending before its first training batch (a failed sanity check) was never profiled: its parameters
        now (no FLOPs without an example input)."""
        if self._needs_profile:
            self._needs_profile = False
            self._log_profile(trainer, pl_module)

    def _log_profile(self, trainer: Any, pl_module: Any) -> None:
        profile = self._inspect(trainer, pl_module)
        if profile is not None:
            self.session.log_profile(profile)


__all__ = ["ProfileMixin"]
