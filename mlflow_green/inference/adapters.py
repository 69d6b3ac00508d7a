"""One predict call per batch, whatever the model is: Keras, torch, an MLflow pyfunc model, anything.

Recognised by duck typing, without importing a framework (a torch module means torch is
already in ``sys.modules``):

- a **Keras** model: ``model.predict_on_batch(batch)`` (the compiled predict function, no
  per-call dataset pipeline);
- a **torch** module (Lightning modules included): ``model(batch)`` in ``torch.inference_mode()``
  and eval mode (restored afterwards); NumPy batches become tensors on the module's device
  before the window opens, and CUDA is synchronised after each call so that the time and
  energy of the call are the call's;
- an object with ``predict`` (an MLflow ``PyFuncModel``, a scikit-learn estimator):
  ``model.predict(batch)``;
- any other callable: ``fn(batch)``.

Example:
    >>> predictor = as_predictor(lambda batch: [x * 2 for x in batch])
    >>> predictor.kind, predictor.predict([1, 2])
    ('callable', [2, 4])
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mlflow_green.errors import ConfigError


@dataclass(frozen=True)
class Predictor:
    """How to run one batch through a model.

    Attributes:
        predict: Runs one prepared batch (and waits until it is done).
        kind: ``keras``, ``torch``, ``predict`` (a ``.predict`` method, e.g. pyfunc) or ``callable``.
        description: What was measured, for the report (``Keras model 'baseline'``).
        prepare: Converts a batch once, before the window (e.g. NumPy to a torch tensor).
        session: A context entered around all the calls (torch: eval and inference mode).
    """

    predict: Callable[[Any], Any]
    kind: str
    description: str
    prepare: Callable[[Any], Any] = field(default=lambda batch: batch)
    session: Callable[[], contextlib.AbstractContextManager[Any]] = field(default=contextlib.nullcontext)


def as_predictor(model: Any) -> Predictor:
    """The :class:`Predictor` of a Keras model, torch module, object with ``predict``, or callable.

    Raises:
        ConfigError: ``model`` is none of these.
    """
    if _is_keras(model):
        return Predictor(model.predict_on_batch, "keras", f"Keras model {getattr(model, 'name', '')!r}")
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return _torch_predictor(model, torch)
    predict = getattr(model, "predict", None)
    if callable(predict):
        return Predictor(predict, "predict", _describe_predict(model))
    if callable(model):
        name = getattr(model, "__qualname__", None) or type(model).__name__
        return Predictor(model, "callable", f"callable {name}")
    raise ConfigError(
        "measure_inference needs a model to call: a Keras model, a torch module, an object with predict() "
        f"(an MLflow pyfunc model, a scikit-learn estimator) or a function of one batch; got {type(model).__name__}"
    )


def _is_keras(model: Any) -> bool:
    keras = sys.modules.get("keras")
    model_cls = getattr(keras, "Model", None) if keras is not None else None
    if model_cls is not None and isinstance(model, model_cls):
        return True
    module = type(model).__module__
    return module.startswith(("keras.", "tf_keras.", "tensorflow.python.keras")) and callable(
        getattr(model, "predict_on_batch", None)
    )


def _describe_predict(model: Any) -> str:
    metadata = getattr(model, "metadata", None)
    if metadata is not None and hasattr(metadata, "flavors"):
        flavors = ",".join(f for f in metadata.flavors if f != "python_function") or "python_function"
        source = f", run {metadata.run_id}" if getattr(metadata, "run_id", None) else ""
        return f"MLflow pyfunc model ({flavors}{source})"
    return f"{type(model).__name__}.predict"


def _torch_predictor(module: Any, torch: Any) -> Predictor:
    try:
        parameter = next(module.parameters())
        device, dtype = parameter.device, parameter.dtype
    except StopIteration:  # no parameters (a quantized or functional module): keep inputs as they are
        device, dtype = torch.device("cpu"), None
    cuda = device.type == "cuda"

    def prepare(batch: Any) -> Any:
        if isinstance(batch, torch.Tensor):
            return batch.to(device)
        if type(batch).__module__.split(".")[0] == "numpy":
            tensor = torch.as_tensor(batch)
            if dtype is not None and tensor.is_floating_point() and dtype.is_floating_point:
                tensor = tensor.to(dtype)
            return tensor.to(device)
        return batch

    def synchronised(batch: Any) -> Any:
        output = module(batch)
        torch.cuda.synchronize(device)
        return output

    @contextlib.contextmanager
    def session() -> Iterator[None]:
        was_training = module.training
        module.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            module.train(was_training)

    predict = synchronised if cuda else module  # on the CPU the call returns when it is done: no wrapper
    return Predictor(predict, "torch", f"torch module {type(module).__name__} on {device}", prepare, session)
