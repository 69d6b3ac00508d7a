"""Run by the SIGTERM tests: ``python sigterm_train.py CASE OUT_DIR`` (``keras``, ``lightning``, ``transformers``,
``track`` and the other cases below).

Trains slowly with GreenCallback into OUT_DIR/mlflow.db and writes OUT_DIR/started (the run id
and the time) once an epoch is done; the test then sends SIGTERM — except ``keras-samples-per-epoch``, which
sends it to itself at a set batch.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

FRAMEWORK, OUT = sys.argv[1], Path(sys.argv[2])
os.environ["MLFLOW_GREEN_SPOOL_DIR"] = str(OUT / "spool")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))

import mlflow  # noqa: E402

mlflow.set_tracking_uri(f"sqlite:///{OUT / 'mlflow.db'}")
mlflow.set_experiment(experiment_id=mlflow.create_experiment("sigterm", artifact_location=(OUT / "art").as_uri()))


def started(run_id: str | None) -> None:
    if not (OUT / "started").exists():
        (OUT / "started").write_text(json.dumps({"run_id": run_id, "time": time.time()}))


if FRAMEWORK == "keras":
    import keras
    import numpy as np

    from mlflow_green.integrations.keras import GreenCallback

    class Slow(keras.utils.PyDataset):
        def __len__(self) -> int:
            return 10

        def __getitem__(self, i: int):
            time.sleep(0.05)
            return np.random.rand(16, 8).astype("float32"), np.random.randint(0, 2, 16)

    cb = GreenCallback()

    class Started(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                started(cb.session.run_id)

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(Slow(), epochs=200, verbose=0, callbacks=[cb, Started()])
elif FRAMEWORK == "keras-in-read":  # the SIGTERM arrives inside a meter read, which holds the meters' lock
    import signal

    import keras
    import numpy as np

    from mlflow_green.integrations.keras import GreenCallback
    from mlflow_green.testing import FakeMeter

    class SignalledInRead(FakeMeter):
        read_count = 0

        def read(self, now_s: float):  # type: ignore[no-untyped-def]
            SignalledInRead.read_count += 1
            if SignalledInRead.read_count == 8:  # a boundary of the third epoch or so
                started(cb.session.run_id)
                signal.raise_signal(signal.SIGTERM)  # the scheduler's SIGTERM, in the middle of the read
            return super().read(now_s)

    cb = GreenCallback(meters=[SignalledInRead({"cpu:0": 20.0, "ram:0": 2.0})])
    x, y = np.random.rand(160, 8).astype("float32"), np.random.randint(0, 2, 160)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, validation_data=(x, y), batch_size=16, epochs=200, verbose=0, callbacks=[cb])
elif FRAMEWORK == "keras-samples-per-epoch":  # SIGTERM, sent by the process itself, after the second epoch's 4th batch
    import signal

    import keras
    import numpy as np

    from mlflow_green.integrations.keras import GreenCallback

    class Batches(keras.utils.PyDataset):
        def __len__(self) -> int:
            return 10

        def __getitem__(self, i: int):
            return np.random.rand(16, 8).astype("float32"), np.random.randint(0, 2, 16)

    cb = GreenCallback(samples_per_epoch=80)  # the user's count: half the 160 rows of the 10 batches

    class TermAfterBatch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if batch == 3 and self.epoch == 1:
                started(cb.session.run_id)
                os.kill(os.getpid(), signal.SIGTERM)  # a real signal, handled at the next bytecode

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(Batches(), epochs=5, verbose=0, callbacks=[cb, TermAfterBatch()])
elif FRAMEWORK == "transformers":
    from hf_models import TokenDataset, bert_classifier, training_args
    from transformers import Trainer, TrainerCallback

    from mlflow_green.integrations.transformers import GreenCallback

    cb = GreenCallback()

    class Started(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kwargs):
            if int(state.epoch or 0) == 2:
                started(cb.session.run_id)

        def on_step_end(self, args, state, control, **kwargs):
            time.sleep(0.05)

    Trainer(model=bert_classifier(), args=training_args(OUT / "hf", num_train_epochs=200, eval_strategy="no"),
            train_dataset=TokenDataset(64, seed=1), callbacks=[cb, Started()]).train()
elif FRAMEWORK == "transformers-evaluate":  # trainer.evaluate() alone, outside train()
    from hf_models import TokenDataset, bert_classifier, training_args
    from transformers import Trainer, TrainerCallback

    from mlflow_green.integrations.transformers import GreenCallback

    cb = GreenCallback()

    class Started(TrainerCallback):
        steps = 0

        def on_prediction_step(self, args, state, control, **kwargs):
            Started.steps += 1
            time.sleep(0.05)
            if Started.steps == 20:
                started(cb.session.run_id)

    Trainer(model=bert_classifier(), args=training_args(OUT / "hf", per_device_eval_batch_size=2),
            eval_dataset=TokenDataset(4000, seed=2), callbacks=[cb, Started()]).evaluate()
elif FRAMEWORK == "track":
    import mlflow_green

    with mlflow_green.track() as t:
        for step in range(2000):
            time.sleep(0.05)
            t.log_step(step, samples=32)
            if step == 10:
                started(t.run_id)
else:
    import lightning
    from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs

    from mlflow_green.integrations.lightning import GreenCallback

    cb = GreenCallback()

    class Started(lightning.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                started(cb.session.run_id)

        def on_train_batch_end(self, *args):
            time.sleep(0.02)

    train, val = loaders()
    lightning.Trainer(max_epochs=200, callbacks=[cb, Started()], **quiet_trainer_kwargs()).fit(digits_classifier(), train, val)
