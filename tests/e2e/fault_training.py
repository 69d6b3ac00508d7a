"""A real training process for the fault suite: ``python fault_training.py '<json config>'``.

Config: ``kind`` (``track``, ``keras`` or ``lightning``), ``epochs``, ``pause_at`` (epochs after which
it waits for a line on stdin, so that the test can break something), ``run_name``, ``ctrl_c_at_bind`` (a SIGINT
50 ms after the callback before mlflow-green's began the fit, while mlflow-green binds its run; then
``{"event": "ctrl_c_sent"}``, and a result with ``interrupted``: what the fit raised).

Prints one JSON object per line on stdout: ``{"event": "paused", "epoch": k, "spooled_s": s}`` when it
waits — once epoch k's point is in the spool (an epoch's accounting and its spool write are done by
background threads, for short epochs like these at most ``COALESCE_S`` (2 s) after its end; ``spooled_s``
is how long after the epoch's end hooks that took, None if not within 5 s: a spool folder that cannot be
written) — and
``{"event": "result", ...}`` at the end: the run id, the bind wait (how long the start of the fit
waited on MLflow: mlflow-green's fit-start hook, timed by callbacks around it), the end wait (its
fit-end hook, timed the same way; a ``track()`` block: from its last step to its return), the time from
the last epoch's end to the return (``after_last_epoch_s``: the framework's own end-of-fit work too), the
fit's wall time and what the meters measured. The tracking URI, experiment, spool folder and
timeouts come from the environment (``MLFLOW_*``, ``MLFLOW_GREEN_*``). The meter is a fake with
a constant draw (no RAPL here); everything else is real.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

POWER_W = {"cpu:0": 20.0, "ram:0": 5.0}


def emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


class Clock:
    """Times of the fit, recorded by callbacks around mlflow-green's own."""

    def __init__(self, pause_at: list[int]) -> None:
        self.pause_at = set(pause_at)
        self.before_bind = self.after_bind = self.released = 0.0
        self.end_began = self.end_done = 0.0  # around mlflow-green's fit-end hook (Keras, Lightning)

    def epoch_end(self, epoch: int) -> None:
        if epoch in self.pause_at:
            emit(event="paused", epoch=epoch, spooled_s=spooled_after_s(epoch))
            sys.stdin.readline()
        self.released = time.monotonic()


def ctrl_c_soon(config: dict[str, Any]) -> None:
    """With ``ctrl_c_at_bind``: a SIGINT to this process in 50 ms (as mlflow-green's fit-start hook binds its run)."""
    if config.get("ctrl_c_at_bind"):
        def send() -> None:
            os.kill(os.getpid(), signal.SIGINT)
            emit(event="ctrl_c_sent")

        threading.Timer(0.05, send).start()


def spooled_after_s(epoch: int, timeout_s: float = 5.0) -> float | None:
    """Seconds until the spool (or its fallback folder) holds epoch ``epoch``'s point; None if it never does."""
    import os

    from mlflow_green.record import schema

    folders = [Path(os.environ[name]) for name in ("MLFLOW_GREEN_SPOOL_DIR", "MLFLOW_GREEN_SPOOL_FALLBACK_DIR") if name in os.environ]
    start_s = time.monotonic()
    while time.monotonic() - start_s < timeout_s:
        for path in (p for folder in folders if folder.is_dir() for p in folder.glob("*.jsonl")):
            try:
                lines = path.read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:  # a line being written
                    continue
                if entry.get("op") == "metrics" and any(
                    row[0] == schema.EPOCH_ENERGY_KWH and row[3] == epoch for row in entry["metrics"]
                ):
                    return time.monotonic() - start_s
        time.sleep(0.002)
    return None


def run_track(config: dict[str, Any], clock: Clock) -> dict[str, Any]:
    import mlflow_green
    from mlflow_green.testing import FakeMeter

    clock.before_bind = time.monotonic()
    with mlflow_green.track(run_name=config["run_name"], meters=[FakeMeter(POWER_W)]) as t:
        clock.after_bind = time.monotonic()
        for epoch in range(config["epochs"]):
            time.sleep(0.3)
            t.log_step(epoch, samples=100)
            clock.epoch_end(epoch)
    return {"run_id": t.run_id, "measured_s": t.measurement.duration_s}


def run_keras(config: dict[str, Any], clock: Clock) -> dict[str, Any]:
    import keras
    from sklearn.datasets import load_digits

    from mlflow_green.integrations.keras import GreenCallback
    from mlflow_green.testing import FakeMeter

    class Before(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            clock.before_bind = time.monotonic()
            ctrl_c_soon(config)

        def on_train_end(self, logs: Any = None) -> None:
            clock.end_began = time.monotonic()

    class After(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            clock.after_bind = time.monotonic()

        def on_train_end(self, logs: Any = None) -> None:
            clock.end_done = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            clock.epoch_end(epoch)

    data = load_digits()
    x, y = (data.data / 16.0).astype("float32"), data.target
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    green = GreenCallback(run_name=config["run_name"], live_metrics=False, meters=[FakeMeter(POWER_W)])
    model.fit(x[:1400], y[:1400], validation_data=(x[1400:], y[1400:]), epochs=config["epochs"], batch_size=256,
              callbacks=[Before(), green, After()], verbose=0)
    return {"run_id": green.session.run_id, "measured_s": green.session.fit_total.duration_s}


def run_lightning(config: dict[str, Any], clock: Clock) -> dict[str, Any]:
    import lightning

    sys.path.insert(0, str(Path(__file__).parents[1] / "integrations"))
    from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs

    from mlflow_green.integrations.lightning import GreenCallback
    from mlflow_green.testing import FakeMeter

    class Before(lightning.Callback):
        def on_fit_start(self, trainer: Any, module: Any) -> None:
            clock.before_bind = time.monotonic()
            ctrl_c_soon(config)

        def teardown(self, trainer: Any, module: Any, stage: str) -> None:
            clock.end_began = time.monotonic()

    class After(lightning.Callback):
        def on_fit_start(self, trainer: Any, module: Any) -> None:
            clock.after_bind = time.monotonic()

        def teardown(self, trainer: Any, module: Any, stage: str) -> None:
            clock.end_done = time.monotonic()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            clock.epoch_end(trainer.current_epoch)

    train, val = loaders(batch_size=256)
    green = GreenCallback(run_name=config["run_name"], meters=[FakeMeter(POWER_W)])
    trainer = lightning.Trainer(max_epochs=config["epochs"], callbacks=[Before(), green, After()], num_sanity_val_steps=0,
                                **quiet_trainer_kwargs())
    trainer.fit(digits_classifier(), train, val)
    return {"run_id": green.session.run_id, "measured_s": green.session.fit_total.duration_s}


def warm_up() -> None:
    """Pay the one-time costs (importing MLflow, the meters' hardware probes) before the timed fit:
    a user's process has usually imported MLflow already."""
    import mlflow  # noqa: F401
    from mlflow.tracking.context import registry  # noqa: F401

    from mlflow_green.measure.tracker import EnergyTracker
    from mlflow_green.testing import FakeMeter

    tracker = EnergyTracker(meters=[FakeMeter(POWER_W)])
    tracker.start()
    tracker.stop()


def main() -> None:
    config = json.loads(sys.argv[1])
    warm_up()
    clock = Clock(config.get("pause_at", []))
    runner = {"track": run_track, "keras": run_keras, "lightning": run_lightning}[config["kind"]]
    started = time.monotonic()
    try:
        result = runner(config, clock)
    except (KeyboardInterrupt, SystemExit) as exc:  # ctrl_c_at_bind (Lightning exits after its own handling)
        emit(event="result", interrupted=type(exc).__name__)
        return
    returned = time.monotonic()
    end_wait_s = clock.end_done - clock.end_began if clock.end_done else returned - clock.released
    emit(event="result", bind_wait_s=clock.after_bind - clock.before_bind, end_wait_s=end_wait_s,
         after_last_epoch_s=returned - clock.released,
         fit_s=returned - started, **result)


if __name__ == "__main__":
    main()
