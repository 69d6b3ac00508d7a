"""The figures each framework's progress display shows are written as everywhere else
(mlflow_green.formatting): "86.1 mWh", never 8.6143e-05 (Keras) or 0.000 (Lightning)."""

from __future__ import annotations

import re

import pytest

from mlflow_green.record import schema

READABLE = re.compile(r"^-?[\d,]+(\.\d+)? (GWh|MWh|kWh|Wh|mWh|µWh)$")


def test_keras_progress_bar_and_history(mlflow_experiment: str, digits, capfd: pytest.CaptureFixture) -> None:
    keras = pytest.importorskip("keras")
    from mlflow_green.integrations.keras import GreenCallback

    x, y, xv, yv = digits
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=256, verbose=2, callbacks=[GreenCallback()])
    out = capfd.readouterr().out
    shown = re.findall(r"green/energy_kwh: ([^-]+?) - ", out + " - ")
    assert len(shown) == 2 and all(READABLE.match(text.strip()) for text in shown), out
    assert re.search(r"green/power_w: [\d.,]+ (m|k)?W\b", out) and "CO2e" in out
    assert "e-0" not in " ".join(line for line in out.splitlines() if "green/" in line)
    energy = history.history[schema.ENERGY_KWH]  # History keeps the numbers, in kWh
    assert all(isinstance(v, float) and 0 < v < 1 for v in energy) and energy[1] > energy[0]


def test_lightning_progress_bar(mlflow_experiment: str) -> None:
    lightning = pytest.importorskip("lightning")
    from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs

    from mlflow_green.integrations.lightning import GreenCallback

    train, val = loaders()
    kwargs = {**quiet_trainer_kwargs(), "enable_progress_bar": True}
    trainer = lightning.Trainer(max_epochs=2, callbacks=[GreenCallback()], **kwargs)
    trainer.fit(digits_classifier(), train, val)
    figures = trainer.progress_bar_metrics
    assert READABLE.match(figures[schema.ENERGY_KWH]), figures
    assert figures[schema.EMISSIONS_KG].endswith("CO2e") and figures[schema.POWER_W].endswith("W")
    assert not any(key.startswith(schema.METRIC_PREFIX) for key in trainer.callback_metrics)  # nothing logged twice
