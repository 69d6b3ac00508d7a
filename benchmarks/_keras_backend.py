"""The Keras backend a benchmark runs on, chosen before Keras is imported (not a benchmark itself)."""

from __future__ import annotations

import os
import sys


def use_backend_from_argv() -> str:
    """Set ``KERAS_BACKEND`` from ``--backend NAME`` on the command line (else the environment, else
    TensorFlow) and quiet TensorFlow's C++ log; returns the backend. Call it before importing Keras."""
    if "--backend" in sys.argv:
        backend = sys.argv[sys.argv.index("--backend") + 1]
    else:
        backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return backend
