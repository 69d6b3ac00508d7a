"""Keras models with a ``train_step`` / ``test_step`` of the user's own, written per backend as Keras's "Customizing
fit()" guides write them: the loss tracker is not given the batch's size (nothing, or the loss alone: 1 a batch), so
it counts no samples. Imported by ``keras_backend_cases.py`` once the backend is set.
"""

from __future__ import annotations

from typing import Any

import keras


def _loss(y: Any, predicted: Any) -> Any:
    return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, predicted))


def _metrics_updated(model: keras.Model, y: Any, predicted: Any, loss: Any) -> dict[str, Any]:
    for metric in model.metrics:  # the loss tracker given the loss alone: it counts batches
        metric.update_state(loss) if metric.name == "loss" else metric.update_state(y, predicted)
    return {metric.name: metric.result() for metric in model.metrics}


def own_steps_model(*, pair_input: bool = False) -> keras.Model:
    """A 64-16-10 MLP whose ``train_step`` updates no metric and whose ``test_step`` gives the loss tracker the loss
    alone; ``pair_input``: it takes ``{"pair": (x[:, :32], x[:, 32:])}`` (Keras's own steps then)."""
    backend = keras.backend.backend()
    if pair_input:
        class Pair(keras.Model):
            def __init__(self) -> None:
                super().__init__()
                self.hidden, self.out = keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10, activation="softmax")

            def call(self, inputs: Any) -> Any:
                return self.out(self.hidden(keras.ops.concatenate(inputs["pair"], axis=-1)))

        model: keras.Model = Pair()
    elif backend == "tensorflow":
        import tensorflow as tf

        class Own(keras.Model):
            def train_step(self, data: Any) -> Any:
                x, y = data
                with tf.GradientTape() as tape:
                    loss = _loss(y, self(x, training=True))
                self.optimizer.apply(tape.gradient(loss, self.trainable_variables), self.trainable_variables)
                return {"loss": loss}

            def test_step(self, data: Any) -> Any:
                x, y = data
                predicted = self(x, training=False)
                return _metrics_updated(self, y, predicted, _loss(y, predicted))
    elif backend == "torch":
        import torch

        class Own(keras.Model):
            def train_step(self, data: Any) -> Any:
                x, y = data
                self.zero_grad()
                loss = _loss(y, self(x, training=True))
                loss.backward()
                weights = list(self.trainable_weights)
                with torch.no_grad():
                    self.optimizer.apply([w.value.grad for w in weights], weights)
                return {"loss": loss}

            def test_step(self, data: Any) -> Any:
                x, y = data
                predicted = self(x, training=False)
                return _metrics_updated(self, y, predicted, _loss(y, predicted))
    else:
        import jax

        class Own(keras.Model):
            def _loss_of(self, trainable: Any, non_trainable: Any, x: Any, y: Any) -> Any:
                predicted, non_trainable = self.stateless_call(trainable, non_trainable, x, training=True)
                return _loss(y, predicted), non_trainable

            def train_step(self, state: Any, data: Any) -> Any:
                trainable, non_trainable, optimizer_vars, metrics_vars = state
                (loss, non_trainable), grads = jax.value_and_grad(self._loss_of, has_aux=True)(trainable, non_trainable, *data)
                trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads, trainable)
                return {"loss": loss}, (trainable, non_trainable, optimizer_vars, metrics_vars)

            def test_step(self, state: Any, data: Any) -> Any:
                x, y = data
                trainable, non_trainable, metrics_vars = state
                predicted, non_trainable = self.stateless_call(trainable, non_trainable, x, training=False)
                loss, new, logs = _loss(y, predicted), [], {}
                for metric in self.metrics:
                    variables = metrics_vars[len(new):len(new) + len(metric.variables)]
                    variables = (metric.stateless_update_state(variables, loss) if metric.name == "loss"
                                 else metric.stateless_update_state(variables, y, predicted))
                    logs[metric.name] = metric.stateless_result(variables)
                    new += variables
                return logs, (trainable, non_trainable, new)

    if not pair_input:
        inputs = keras.Input((64,))
        model = Own(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Dense(16, activation="relu")(inputs)))
    model.compile("adam", "sparse_categorical_crossentropy")  # (no compiled metric: the own train_step updates none)
    return model


class PairOut(keras.Model):
    """A model whose output is ``{"pair": (p, 1 - p)}`` (a tuple inside a dict)."""

    def __init__(self) -> None:
        super().__init__()
        self.out = keras.layers.Dense(10, activation="softmax")

    def call(self, inputs: Any) -> Any:
        predicted = self.out(inputs)
        return {"pair": (predicted, 1.0 - predicted)}
