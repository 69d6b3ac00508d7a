"""Which part of the suite runs where, and no silent skips.

The whole suite runs in the main environment (every extra). ``make test`` also runs the *core
suite* — everything that needs no framework extra — in a second environment on the last MLflow
2.x, and ``scripts/check_extras.sh`` runs each extra's part in a
fresh environment with only that extra. A framework that is not installed there takes its
adapters' doctests out of the collection (below) and skips its test modules
(``pytest.importorskip``); any other skip fails the run, so a test is never silently not run.
"""

from __future__ import annotations

import importlib.util
import os
import re
from typing import Any

import pytest

FRAMEWORK_FILES = {  # import name -> the adapters (collected as doctest modules) that need it
    "keras": ["integrations/keras.py", "integrations/keras_inspector.py"],
    "torch": ["integrations/torch_inspector.py", "integrations/_lightning_impl.py", "integrations/_torch_distributed.py",
              "tests/integrations/lightning_models.py", "tests/integrations/ddp_train.py", "tests/integrations/hf_models.py"],
    "lightning": ["integrations/lightning.py"],
    "pytorch_lightning": ["integrations/pytorch_lightning.py"],
    "transformers": ["integrations/transformers.py"],
}
ALLOWED_SKIP = re.compile(r"could not import '(%s)[.']" % "|".join(re.escape(name) for name in [*FRAMEWORK_FILES, "tensorflow"]))

collect_ignore = [
    path for module, paths in FRAMEWORK_FILES.items() if importlib.util.find_spec(module) is None for path in paths
]
collect_ignore_glob = [".venv*/*"]

_bad_skips: list[str] = []


def pytest_collectreport(report: Any) -> None:
    pytest_runtest_logreport(report)


def pytest_runtest_logreport(report: Any) -> None:
    if not report.skipped:
        return
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if ALLOWED_SKIP.search(reason + "'") is None:
        _bad_skips.append(f"{report.nodeid or report.fspath}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _bad_skips and os.environ.get("MLFLOW_GREEN_ALLOW_SKIPS") != "1":
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("Skipped for a reason other than a missing framework (a test must run or fail):", red=True)
            for line in _bad_skips:
                reporter.write_line(f"  {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
