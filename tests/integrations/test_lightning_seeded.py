"""A seeded Lightning fit trains the same with the callback as without it, whatever its ``forward`` draws or counts.

The callback profiles the model with one forward pass (FLOPs) as the fit starts and again as it ends. A ``forward``
that draws noise from torch's or NumPy's generator (a VAE's reparameterisation, noise injection) took draws there,
so the fit with the callback trained on other noise and other batches; a buffer ``forward`` updates counted the pass.
Real fits of a digits classifier, with and without ``example_input_array`` (else the profile runs on one sample of
the first batch), compared weight for weight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("lightning")

import lightning  # noqa: E402
import torch  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402

from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402


class NoisyDigits(type(digits_classifier())):  # type: ignore[misc]
    """The digits classifier with noise from torch and NumPy added to each input and a buffer counting its forward
    calls; its ``example_input_array`` left out (``example=False``): the profile then runs on the first batch."""

    def __init__(self, example: bool) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.example_input_array = torch.zeros(2, 64) if example else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        shift = float(np.random.normal(scale=0.01))
        return self.net(x + 0.1 * torch.randn_like(x) + shift)


def _fit(example: bool, callbacks: list[Any], tmp_path: Path) -> NoisyDigits:
    lightning.seed_everything(0, verbose=False)  # torch, NumPy and Python's generators
    model = NoisyDigits(example)
    trainer = lightning.Trainer(max_epochs=2, limit_train_batches=6, limit_val_batches=2, default_root_dir=tmp_path,
                                callbacks=callbacks, **quiet_trainer_kwargs())
    trainer.fit(model, *loaders())
    return model


@pytest.mark.parametrize("example", [True, False], ids=["example_input_array", "first batch"])
def test_a_seeded_fit_whose_forward_draws_noise_trains_the_same_with_the_callback(example: bool, mlflow_experiment: str,
                                                                                 tmp_path: Path) -> None:
    without = _fit(example, [], tmp_path / "without")
    green = GreenCallback(meters=[FakeMeter({"cpu:0": 45.0, "ram:0": 5.0})])
    with_green = _fit(example, [green], tmp_path / "with")
    assert green.session.profile is not None and green.session.profile.flops_per_sample  # the pass ran
    assert int(with_green.calls) == int(without.calls)  # the profile's passes not counted by the model
    for (name, mine), (_, theirs) in zip(without.state_dict().items(), with_green.state_dict().items()):
        assert torch.equal(mine, theirs), f"{name} differs with the callback"


class LazyDigits(type(digits_classifier())):  # type: ignore[misc]
    """The digits classifier built of ``nn.LazyLinear``: its weights exist once its first forward ran."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.LazyLinear(32), torch.nn.ReLU(), torch.nn.LazyLinear(10))


def test_lazy_modules_are_profiled_at_the_fits_end_and_train_the_same(mlflow_experiment: str, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The profile at fit start would initialise them (from other draws than the training's): it waits, saying so
    at INFO (it warned "model inspector 'torch' failed: Can't access the shape of an uninitialized parameter")."""
    def fit(callbacks: list[Any], root: Path) -> LazyDigits:
        lightning.seed_everything(0, verbose=False)
        model = LazyDigits()
        lightning.Trainer(max_epochs=1, limit_train_batches=6, limit_val_batches=2, default_root_dir=root,
                          callbacks=callbacks, **quiet_trainer_kwargs()).fit(model, *loaders())
        return model

    without = fit([], tmp_path / "without")
    green = GreenCallback(meters=[FakeMeter({"cpu:0": 45.0, "ram:0": 5.0})])
    with caplog.at_level("INFO", logger="mlflow_green"):
        with_green = fit([green], tmp_path / "with")
    assert not [r for r in caplog.records if r.name.startswith("mlflow_green") and r.levelname == "WARNING"], caplog.text
    assert "lazy modules not initialised yet" in caplog.text
    assert green.session.profile is not None and green.session.profile.params == 64 * 32 + 32 + 32 * 10 + 10
    assert green.session.profile.flops_per_sample
    for (name, mine), (_, theirs) in zip(without.state_dict().items(), with_green.state_dict().items()):
        assert torch.equal(mine, theirs), f"{name} differs with the callback"
