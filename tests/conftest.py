"""Shared fixtures: a clean environment and a real MLflow sqlite store per test session."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# One compute thread per framework, in this process and the training processes the tests start (they inherit it):
# the suite runs two test processes on two cores, and a framework's pool of a thread per core, spinning while it waits
# for work, spent a quarter of their CPU time on that (test_keras_backends.py: 159 s -> 118 s of CPU). Set before
# torch, TensorFlow or JAX is imported; a variable the caller set is kept.
for _name, _value in (("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"), ("TF_NUM_INTRAOP_THREADS", "1"),
                      ("TF_NUM_INTEROP_THREADS", "1"),
                      ("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")):
    os.environ.setdefault(_name, _value)


@pytest.fixture(scope="session")
def green_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder per test session: CodeCarbon's power model is resolved once, never in ~/.cache."""
    return tmp_path_factory.mktemp("green-cache")


CHECKOUT = Path(__file__).resolve().parent.parent


def _artifact_folders(root: Path) -> set[str]:
    return {str(p) for p in (*root.glob("mlruns/*/*"), *root.glob("mlartifacts/*"))}


@pytest.fixture(scope="session", autouse=True)
def _nothing_written_into_the_checkout() -> Iterator[None]:
    """The suite leaves the checkout as it found it: no run's artifacts in ./mlruns (MLflow's default) or ./mlartifacts."""
    before = _artifact_folders(CHECKOUT)
    yield
    written = sorted(_artifact_folders(CHECKOUT) - before)
    assert not written, f"tests wrote {len(written)} artifact folders into the checkout, e.g. {written[:3]}"


@pytest.fixture(autouse=True)
def _clean_green_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, green_cache_dir: Path) -> None:
    """No MLFLOW_GREEN_* setting of the developer's shell leaks into a test; spools, caches and MLflow's default
    artifact folder (``./mlruns``) stay in tmp."""
    for key in list(os.environ):
        if key.startswith("MLFLOW_GREEN_"):
            monkeypatch.delenv(key)
    # mlflow.set_experiment() exports MLFLOW_EXPERIMENT_ID for child processes: one test's experiment
    # (in its own store) must not become the next test's children's default experiment.
    for key in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_GREEN_SPOOL_DIR", str(tmp_path / "green-spool"))
    monkeypatch.setenv("MLFLOW_GREEN_CACHE_DIR", str(green_cache_dir))
    monkeypatch.setenv("MLFLOW_GREEN_SPOOL_FALLBACK_DIR", str(tmp_path / "green-spool-fallback"))
    # MLflow puts a store's artifacts under ./mlruns of the working directory unless told otherwise (a sqlite store's
    # Default experiment, an experiment set by name in a subprocess): every test works in its own folder
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """SIGINT and SIGTERM as they were before each test: a test must not change them for the tests after it,
    nor for the processes those start. Lightning, interrupted, ignores SIGINT from then on (its graceful
    shutdown's ``signal.signal(SIGINT, SIG_IGN)``), and children inherit an ignored signal: a later test's
    subprocess then never saw its Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in before.items():
        if handler is not None and signal.getsignal(signum) is not handler:
            signal.signal(signum, handler)


@pytest.fixture(autouse=True)
def _no_run_left_pending() -> Iterator[None]:
    """A run mlflow-green started that MLflow has not created yet stays on its thread's stack until its block ends: one
    a test leaves there (a block never ended) takes in every later block of the worker — their figures go into it, and
    a nested one waits for it as its parent (a core-suite run saw one failed test make nine more fail). Such a run is
    ended here, and the test fails."""
    yield
    runs = sys.modules.get("mlflow_green.record.runs")
    left = list(runs._pending_stack()) if runs is not None else []
    for handle in left:
        handle.finish("FAILED", timeout_s=0)
    assert not left, f"the test left {len(left)} run(s) it started pending on its thread's stack (never ended)"


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One real sqlite tracking store for the session (creating one costs about a second)."""
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return f"sqlite:///{db}"


@pytest.fixture()
def mlflow_experiment(tracking_uri: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh experiment in the session's sqlite store, set as the active one; yields its id."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    name = f"{request.node.nodeid}-{os.getpid()}"  # unique: the same test name in two modules, one store
    experiment_id = mlflow.create_experiment(name, artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment_id)
    yield experiment_id
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture(scope="session")
def digits() -> tuple:
    """(x_train, y_train, x_val, y_val): 1 400 / 397 images of 8×8 digits from scikit-learn, in [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int64")
    return x[:1400], y[:1400], x[1400:], y[1400:]


@pytest.fixture()
def fresh_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tracking store MLflow has not made yet (1-2 s to make), set as the tracking URI, and runs not waited for
    as calls start (``MLFLOW_GREEN_START_TIMEOUT_S=0``: their creation is spooled); the end of a call waits for
    them however busy the machine. Returns the test's folder."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'fresh.db'}")
    # the new store's Default experiment: not an experiment an earlier test made active in another store
    # (MLflow keeps the active experiment's id across tracking URIs; setting one here would make the database now)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.setenv("MLFLOW_GREEN_START_TIMEOUT_S", "0")
    monkeypatch.setenv("MLFLOW_GREEN_END_TIMEOUT_S", "300")
    return tmp_path
