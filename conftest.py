"""Which part of the suite runs where, and no silent skips.

The whole suite runs in the main environment (every extra). ``make test`` also runs the *core
suite* — everything that needs no framework extra — in a second environment on the last MLflow
2.x, and ``scripts/check_extras.sh`` runs each extra's part in a fresh environment with only that
extra. Where a framework is not installed, the modules that import it at their top (adapters in
``integrations/``, test modules) are left out of the collection and listed at the end of the run;
tests that need one inside use ``pytest.importorskip``. Any other skip fails the run, so a test is
never silently not run.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.util
import linecache
import os
import re
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import pytest

FRAMEWORKS = ("keras", "tensorflow", "torch", "lightning", "pytorch_lightning", "transformers", "accelerate", "jax")
ALLOWED_SKIP = re.compile(r"could not import '(%s)[.']" % "|".join(re.escape(name) for name in FRAMEWORKS))

ROOT = Path(__file__).resolve().parent
collect_ignore_glob = [".venv*/*"]


def _linecache_safe_from_other_threads() -> None:
    """Python before 3.13: ``linecache.getlines`` and ``checkcache`` look an entry up after checking that it is there,
    and SQLAlchemy removes the entries of its generated code (``<sqlalchemy generated __init__ for class …>``,
    MLflow's migrations' classes) from a garbage collector's finalizer, in whatever thread collects. A warning
    formatted in the main thread as another thread collected failed a test with that ``KeyError`` (one doctest in
    one CI run, stop 53). The suite's processes retry the lookup; nothing of mlflow-green's own is changed."""
    if sys.version_info >= (3, 13):
        return
    getlines, checkcache = linecache.getlines, linecache.checkcache

    def safe_getlines(filename: str, module_globals: Any = None) -> list[str]:
        for _ in range(3):
            try:
                return getlines(filename, module_globals)
            except KeyError:  # removed meanwhile: read it again
                continue
        return []

    def safe_checkcache(filename: str | None = None) -> None:
        with contextlib.suppress(KeyError):  # an entry removed meanwhile needs no check
            checkcache(filename)

    linecache.getlines, linecache.checkcache = safe_getlines, safe_checkcache


_linecache_safe_from_other_threads()

_left_out: list[str] = []
_bad_skips: list[str] = []
_slow_logs: list[str] = []

SLOW_CALL_S = 20.0
"""A test call taking longer is listed at the end with the mlflow-green warnings it logged (an end that waited for
its end timeout, a store that did not answer): a hint where the suite's time went, never a failure."""


@functools.cache
def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@functools.cache
def _top_level_imports(path: Path) -> frozenset[str]:
    """The root packages a module imports at its top level (try/except and if blocks included),
    through the ``mlflow_green.integrations`` modules it imports too."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return frozenset()
    roots: set[str] = set()

    def add(module: str) -> None:
        roots.add(module.split(".")[0])
        if module.startswith("mlflow_green.integrations."):
            adapter = ROOT / "integrations" / (module.split(".")[2] + ".py")
            if adapter.exists() and adapter != path:
                roots.update(_top_level_imports(adapter))

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                add(node.module)
            elif isinstance(node, ast.Try):
                visit(node.body)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.dump(node.test):
                visit(node.body)

    visit(tree.body)
    return frozenset(roots)


@functools.cache
def _all_imports(path: Path) -> frozenset[str]:
    """Every root package a module imports anywhere (functions included)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return frozenset()
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    return frozenset(roots)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    path = Path(collection_path).resolve()
    if path.suffix != ".py" or path.name == "conftest.py" or not path.is_relative_to(ROOT):
        return None
    if path.relative_to(ROOT).parts[0] == "tests" and not path.name.startswith("test_"):
        return True  # helpers of the tests (models, scripts run in subprocesses): no doctests to collect
    imports = set(_top_level_imports(path))
    if path.relative_to(ROOT).parts[0] == "integrations":  # adapters: their doctests use the framework too
        imports |= _all_imports(path)
    missing = sorted(m for m in imports & set(FRAMEWORKS) if not _installed(m))
    if missing:
        _left_out.append(f"{path.relative_to(ROOT)} (needs {', '.join(missing)})")
        return True
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test call gets, as they were when it failed, this process's other threads' stacks, the MLflow SQL
    stores' connection pools in use and (where ``py-spy`` is installed) each thread's native stack: a failure seen once
    in a CI run says where a background thread was (a writer waiting on a store, a lock, a disk)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        parts = []
        for helper in (_thread_stacks, _sql_pools, _native_stacks):
            try:
                parts.append(helper())
            except Exception as exc:  # a diagnosis never breaks the run
                parts.append(f"\n--- {helper.__name__}: {exc!r}")
        report.sections.append(("Threads when it failed", "".join(parts)))


def _native_stacks() -> str:
    """Where in C code each thread is (``py-spy``, in the test extra; absent from the core suite's environment): a
    thread blocked below Python, e.g. in a garbage collection's finalizer or inside SQLite."""
    import shutil
    import subprocess

    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        return ""
    try:
        done = subprocess.run([spy, "dump", "--native", "--pid", str(os.getpid())], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"\n--- py-spy: {exc!r}"
    return f"\n--- py-spy dump --native\n{done.stdout[:40000]}{done.stderr[-2000:]}"


def _sql_pools() -> str:
    """The connection pools of this process's MLflow SQL stores (tracking and registry) with connections checked out:
    one ``log_batch`` in progress holds two (its session and the one MLflow opens for the metrics); the pool (5 + 10
    overflow) exhausted would make every session wait 30 s. Passwords hidden."""
    if "mlflow" not in sys.modules:
        return ""
    from mlflow.store.model_registry import sqlalchemy_store as registry
    from mlflow.store.tracking import sqlalchemy_store as tracking

    engines: dict[int, Any] = {}
    for store in (tracking.SqlAlchemyStore, registry.SqlAlchemyStore):
        mapped = getattr(store, "_engine_map", None) or getattr(store, "_db_uri_sql_alchemy_engine_map", None) or {}
        engines.update((id(engine), engine) for engine in list(mapped.values()))
    return "".join(f"\n--- pool of {engine.url.render_as_string(hide_password=True)}: {engine.pool.status()}"
                   for engine in engines.values() if getattr(engine.pool, "checkedout", lambda: 0)() > 0)


def _thread_stacks(limit: int = 14) -> str:
    """The innermost ``limit`` frames of every thread but the caller's, mlflow-green's own first."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    frames = [(names.get(ident, "?"), frame) for ident, frame in sys._current_frames().items() if ident != threading.get_ident()]
    frames.sort(key=lambda pair: not pair[0].startswith("mlflow-green"))
    return "\n".join(f"--- {name}\n" + "".join(traceback.format_stack(frame, limit=limit)) for name, frame in frames)


def pytest_collectreport(report: Any) -> None:
    pytest_runtest_logreport(report)


def pytest_runtest_logreport(report: Any) -> None:
    if getattr(report, "when", None) == "call" and report.duration > SLOW_CALL_S:
        logged = [line for _, text in report.sections if "log" in _ for line in text.splitlines() if "mlflow_green" in line]
        _slow_logs.append(f"{report.nodeid} ({report.duration:.1f} s): " + (" | ".join(logged[:8]) or "no warning logged"))
    if not report.skipped:
        return
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if ALLOWED_SKIP.search(reason + "'") is None:
        _bad_skips.append(f"{report.nodeid or report.fspath}: {reason}")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: what a worker left out of its collection is listed by the controller."""
    _left_out.extend(getattr(node, "workeroutput", {}).get("green_left_out", []))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _slow_logs:
        terminalreporter.write_line(f"Test calls over {SLOW_CALL_S:.0f} s and the mlflow-green warnings they logged:")
        for line in _slow_logs:
            terminalreporter.write_line(f"  {line[:1500]}")
    if _left_out:
        terminalreporter.write_line(f"Left out here, their framework is not installed: {', '.join(sorted(set(_left_out)))}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    worker_output = getattr(session.config, "workeroutput", None)  # a pytest-xdist worker: hand the list on
    if worker_output is not None:
        worker_output["green_left_out"] = list(_left_out)
    if _bad_skips and os.environ.get("MLFLOW_GREEN_ALLOW_SKIPS") != "1":
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("Skipped for a reason other than a missing framework (a test must run or fail):", red=True)
            for line in _bad_skips:
                reporter.write_line(f"  {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
