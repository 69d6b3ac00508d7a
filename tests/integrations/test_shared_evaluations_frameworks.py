"""A Keras and a Lightning callback evaluating in turn in one run of the user's: one running total per kind.

A project training a Keras model and a Lightning model into one run (a teacher and a student, two halves of a
pipeline), each evaluated in turn: every evaluation goes on from the run's latest total, whichever framework's
callback logged it, and the run's report counts every evaluation's samples.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

keras = pytest.importorskip("keras")
lightning = pytest.importorskip("lightning")

import torch  # noqa: E402
from green_invariants import assert_green_invariants  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from mlflow_green.integrations.keras import GreenCallback as KerasGreen  # noqa: E402
from mlflow_green.integrations.lightning import GreenCallback as LightningGreen  # noqa: E402
from mlflow_green.record import schema  # noqa: E402
from mlflow_green.testing import FakeMeter  # noqa: E402

J_PER_KWH = 3.6e6


def test_a_keras_and_a_lightning_callback_evaluating_in_one_run_keep_one_running_total(mlflow_experiment: str, digits,
                                                                                          tmp_path: Path) -> None:
    x, y, xv, yv = digits
    keras_green, lightning_green = KerasGreen(meters=[FakeMeter({"cpu:0": 100.0})]), LightningGreen(meters=[FakeMeter({"cpu:0": 100.0})])
    teacher = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    student, (train, val) = digits_classifier(), loaders()
    trainer = lightning.Trainer(max_epochs=1, callbacks=[lightning_green], **quiet_trainer_kwargs())
    test_loader = DataLoader(TensorDataset(torch.tensor(xv[:150]), torch.tensor(yv[:150])), batch_size=50)
    with mlflow.start_run() as run:
        teacher.fit(x, y, epochs=1, batch_size=200, verbose=0, callbacks=[keras_green])
        trainer.fit(student, train, val)
        teacher.evaluate(xv[:100], yv[:100], verbose=0, callbacks=[keras_green])
        trainer.test(student, test_loader, verbose=False)
        teacher.evaluate(xv[:50], yv[:50], verbose=0, callbacks=[keras_green])
    client = MlflowClient()
    points = sorted(client.get_metric_history(run.info.run_id, schema.phase_energy_key("test")), key=lambda p: p.step)
    per_sample = {p.step: p.value for p in client.get_metric_history(run.info.run_id, schema.phase_energy_per_sample_key("test"))}
    values = [p.value * J_PER_KWH for p in points]
    assert len(points) == 3 and values == sorted(values), values  # one running total, never going back
    for i, (point, samples) in enumerate(zip(points, [100, 150, 50])):  # each: the one before plus this evaluation
        assert point.value * J_PER_KWH == pytest.approx((values[i - 1] if i else 0.0) + per_sample[point.step] * samples, rel=1e-6)
    report = json.loads(Path(client.download_artifacts(run.info.run_id, schema.REPORT_ARTIFACT, str(tmp_path))).read_text())
    assert report["samples"]["test"] == 300
    assert report["phases"]["test"]["energy_j"] == pytest.approx(values[-1], rel=1e-6)
    assert [m.step for m in client.get_metric_history(run.info.run_id, schema.ENERGY_KWH)][:2] == [0, 1]  # the two fits
    assert_green_invariants(run.info.run_id)
