"""Lightning calls none of the callback's no-op hooks (``integrations/_lightning_idle_hooks.py``).

Lightning's ``SimpleProfiler`` records each callback hook it calls. A plain ``Callback`` in the same Trainer shows
the hooks that are recorded (its four no-ops at every training batch); GreenCallback shows none of them, in a fit,
a validation, a test and a prediction. A subclass's own hook is still called, and may call ``super()``'s.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

pytest.importorskip("lightning")

import lightning  # noqa: E402
from green_invariants import assert_green_invariants  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402

from mlflow_green.integrations._lightning_idle_hooks import IDLE_HOOKS  # noqa: E402
from mlflow_green.integrations.lightning import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402

TRAIN_BATCHES, VAL_BATCHES = 22, 4  # loaders(): 1 400 samples by 64, 397 by 128


class Reference(lightning.Callback):
    """A plain callback: Lightning calls its inherited no-ops."""


class ValAccuracies(lightning.Callback):
    """The validation accuracy Lightning holds at each epoch's end."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.values.append(float(trainer.callback_metrics["val_acc"]))


def _recorded(trainer: Any, name: str) -> dict[str, int]:
    prefix = f"[Callback]{name}."
    return {key[len(prefix):]: len(durations) for key, durations in trainer.profiler.recorded_durations.items()
            if key.startswith(prefix)}


def test_lightning_calls_none_of_the_callbacks_no_op_hooks(mlflow_experiment: str, tmp_path: Path) -> None:
    train, val = loaders()
    cb, accuracies = GreenCallback(), ValAccuracies()
    profiler = lightning.pytorch.profilers.SimpleProfiler(dirpath=tmp_path, filename="hooks")
    trainer = lightning.Trainer(max_epochs=2, num_sanity_val_steps=2, callbacks=[Reference(), cb, accuracies],
                                profiler=profiler, **quiet_trainer_kwargs())
    model = digits_classifier()
    trainer.fit(model, train, val)
    trainer.validate(model, val, verbose=False)
    trainer.test(model, val, verbose=False)
    trainer.predict(model, val)
    reference, ours = _recorded(trainer, "Reference"), _recorded(trainer, "GreenCallback")
    assert reference["on_after_backward"] == reference["on_before_zero_grad"] == 2 * TRAIN_BATCHES  # recorded, for a plain one
    assert set(IDLE_HOOKS) <= set(reference)  # every idle hook is one Lightning calls here
    assert not set(IDLE_HOOKS) & set(ours), sorted(set(IDLE_HOOKS) & set(ours))
    assert {"on_train_epoch_end", "on_validation_end", "on_test_end", "on_predict_end"} <= set(ours)
    # the epoch's quality still read from Lightning's tensors (by the epoch's accounting, off the training thread)
    client = MlflowClient()
    energy = {m.step: m.value for m in client.get_metric_history(cb.session.run_id, schema.ENERGY_KWH)}
    quality = {m.step: m.value for m in client.get_metric_history(cb.session.run_id, schema.ACCURACY_PER_KWH)}
    assert quality[0] == pytest.approx(accuracies.values[0] / energy[0], rel=1e-6)
    assert_green_invariants(cb.session.run_id)


def test_a_subclasss_own_hook_is_called_and_may_call_super(mlflow_experiment: str, tmp_path: Path) -> None:
    class Counting(GreenCallback):
        def __init__(self) -> None:
            super().__init__()
            self.calls = {"on_after_backward": 0, "on_validation_epoch_end": 0}

        def on_after_backward(self, trainer: Any, pl_module: Any) -> None:
            super().on_after_backward(trainer, pl_module)  # Callback's no-op
            self.calls["on_after_backward"] += 1

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            super().on_validation_epoch_end(trainer, pl_module)
            self.calls["on_validation_epoch_end"] += 1

    train, val = loaders()
    cb = Counting()
    assert cb.on_before_backward is None and callable(cb.on_after_backward)
    trainer = lightning.Trainer(max_epochs=2, num_sanity_val_steps=0, callbacks=[cb], **quiet_trainer_kwargs())
    trainer.fit(digits_classifier(), train, val)
    assert cb.calls == {"on_after_backward": 2 * TRAIN_BATCHES, "on_validation_epoch_end": 2}
    assert MlflowClient().get_run(cb.session.run_id).info.status == "FINISHED"


def test_a_copy_leaves_the_same_hooks_out() -> None:
    cb = GreenCallback()
    for other in (copy.deepcopy(cb), pickle.loads(pickle.dumps(cb))):
        assert all(getattr(other, name) is None for name in IDLE_HOOKS)
        assert callable(other.on_train_epoch_end) and callable(other.on_train_batch_end)


def test_a_class_combining_ours_with_another_callback_keeps_that_ones_hooks(mlflow_experiment: str) -> None:
    """``class Combined(GreenCallback, Notifier)``: Notifier's own ``on_train_end`` and ``on_validation_epoch_end``
    come after ours in the method resolution order, and are still called (none of ours stands for them)."""

    class Notifier(lightning.Callback):
        def __init__(self) -> None:
            self.seen: list[str] = []

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self.seen.append("on_train_end")

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.seen.append("on_validation_epoch_end")

    class Combined(GreenCallback, Notifier):
        def __init__(self) -> None:
            GreenCallback.__init__(self)
            Notifier.__init__(self)

    cb = Combined()
    train, val = loaders()
    trainer = lightning.Trainer(max_epochs=2, num_sanity_val_steps=0, callbacks=[cb], **quiet_trainer_kwargs())
    trainer.fit(digits_classifier(), train, val)
    assert cb.seen == ["on_validation_epoch_end", "on_validation_epoch_end", "on_train_end"]
    assert cb.on_after_backward is None  # the no-ops neither defines are still left out
    assert MlflowClient().get_run(cb.session.run_id).info.status == "FINISHED"


def test_a_hook_set_on_the_instance_before_is_kept() -> None:
    class Early(GreenCallback):
        def __init__(self) -> None:
            self.on_fit_end = lambda trainer, pl_module: None  # a wrapper set before the callback's own init
            super().__init__()

    assert callable(Early().on_fit_end) and Early().on_train_end is None


def test_a_metric_on_an_accelerator_is_read_on_the_training_thread() -> None:
    """The epoch's metrics go to the accounting (another thread) as they are only on the CPU: a tensor on another
    device (MPS takes no reads from two threads) is read at the epoch's end, on the thread that calls it."""
    import threading
    from types import SimpleNamespace

    import torch

    from mlflow_green.integrations._torch_batches import epoch_metrics

    class OnDevice:  # as a torch tensor on MPS
        device, is_cpu = SimpleNamespace(type="mps"), False
        read_on: list[int] = []

        def item(self) -> float:
            OnDevice.read_on.append(threading.get_ident())
            return 0.75

    cpu = torch.tensor(0.5)
    copied = epoch_metrics({"val_acc": OnDevice(), "loss": cpu, "note": "x", "nan_on_device": torch.tensor(float("nan"), device="meta")})
    assert copied["val_acc"] == 0.75 and OnDevice.read_on == [threading.get_ident()]
    assert copied["loss"] is cpu and copied["note"] == "x"  # the CPU's left for the accounting, read only if needed
    assert copied["nan_on_device"] is None  # unreadable here: not a number
